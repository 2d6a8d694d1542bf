"""What configure builds and every step uses: the model with its teacher, the optimisation, the
loss graph and the generator of the loss's sampling (saved with the worker's state)."""

import torch

from ..graph import LossGraph
from ..model import build_model
from . import runtime
from .optimisation import Optimisation


class Trainer:
    def __init__(self, cfg, schemas, device):
        self.device = torch.device(device)
        self.threads = runtime.set_up(cfg["threads"], cfg["deterministic"])
        torch.manual_seed(cfg["seed"])
        self.num_classes = cfg["model"]["num_classes"]
        self.channels_last = cfg["channels_last"]
        self.net = build_model(cfg["model"]).to(self.device)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.optim = Optimisation(self.net, cfg["optim"], cfg["amp"], self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg["seed"] + 1)
        self.graph = LossGraph(cfg["loss"], schemas)
        self.step = None  # the last step taken (or loaded)
