"""What configure builds and every step uses: the model with its teacher, the student's pass (under
DistributedDataParallel when the worker is one rank of several), the optimisation, the loss graph
and the generator of the loss's sampling (saved with the worker's state).

At world size > 1 (`distributed` of configure; DESIGN.md "Many workers", spec §7.10):
* `sync_bn`: the student's and the uncertainty head's BatchNorm layers are synchronised across
  ranks (train/parallel.py).
* `teacher_sync_bn`: the teacher's too, as released (its train-mode pseudo-labelling forward
  normalises over every rank's unlabeled images and its running statistics are global); without
  it, this rank's batch statistics. Eval-mode forwards (evaluation, prediction) run no collective.
* the student and head train under DDP (`broadcast_buffers` as configured, find_unused_parameters);
  the teacher is a plain module, identical on every rank: rank 0's at configure, then updated from
  the synchronised student parameters. With `broadcast_buffers` its buffers are also rank 0's
  after every step (as released, where DDP broadcast the teacher's buffers too: Q-ema-3);
  without it and without `sync_bn`, BatchNorm statistics may differ between ranks.
* `prototypes`: 'global' sums PRCL's per-class prototype statistics over ranks (as released),
  'local' keeps this rank's.
* the loss's generator is seeded `seed + 1 + rank` (rank 0 draws what a single process draws), so
  ranks sample different anchors and negatives.
"""

import torch

from .. import distributed
from ..graph import LossGraph
from ..model import build_model
from . import parallel, runtime
from .optimisation import Optimisation


class Trainer:
    def __init__(self, cfg, schemas, device):
        self.device = torch.device(device)
        self.threads = runtime.set_up(cfg["threads"], cfg["deterministic"])
        torch.manual_seed(cfg["seed"])
        self.seed = cfg["seed"]
        self.num_classes = cfg["model"]["num_classes"]
        self.channels_last = cfg["channels_last"]
        self.parallel = dict(cfg["distributed"])
        self.rank, self.world = distributed.rank(), distributed.world()
        self.net = build_model(cfg["model"]).to(self.device)
        self.dtype = next(self.net.parameters()).dtype  # float32 (float64 under a double default dtype)
        if self.world > 1 and self.parallel["sync_bn"]:
            self.net.student = parallel.convert_sync_bn(self.net.student, self.device)
            self.net.head = parallel.convert_sync_bn(self.net.head, self.device)
        if self.world > 1 and self.parallel.get("teacher_sync_bn", False):
            self.net.teacher = parallel.convert_sync_bn(self.net.teacher, self.device)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        # The student's whole pass of a step: one forward per backward, as DDP needs.
        self.student_pass = self.net.student_pass()
        if self.world > 1:
            # DDP copies rank 0's student and head to every rank; the teacher likewise.
            self.student_pass = parallel.wrap(self.student_pass, self.device, self.parallel["broadcast_buffers"])
            distributed.broadcast_(list(self.net.teacher.state_dict().values()))
        self.optim = Optimisation(self.net, cfg["optim"], cfg["amp"], self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.loss_seed())
        self.graph = LossGraph(cfg["loss"], schemas)
        self.prototype_reduce = (distributed.reduce_sums
                                 if self.world > 1 and self.parallel["prototypes"] == "global" else None)
        self.step = None  # the last step taken (or loaded)

    def loss_seed(self, step=None):
        """The seed of this rank's loss generator: `seed + 1 + rank` at configure; after loading a
        file another rank wrote (a changed world size), a stream of its own from (seed, rank, step)."""
        base = self.seed + 1 + self.rank
        return base if step is None else (base * 1_000_003 + (step + 1) * 7_919) % (2 ** 63 - 1)

    def sync_teacher_buffers(self):
        """With broadcast_buffers at world size > 1: the teacher's buffers become rank 0's."""
        if self.world > 1 and self.parallel["broadcast_buffers"]:
            distributed.broadcast_(list(self.net.teacher.buffers()))
