"""The non-finite guard (issue 10, item 2): a step whose loss or gradients are not finite is not
applied, and no non-finite network is ever written to disk.

* `non_finite(total, values, grad_norm, params)`: after the backward and before the optimisers
  step, the names of what is not finite: `total`, any loss term by its name, `gradients` (the
  total gradient norm: clip_grad_norm_'s when clipping, else one norm over every gradient). At
  world size > 1 the flags are all-reduced (max, collective kind `guard`) before anyone decides,
  so a NaN on one rank makes every rank skip (no rank applies a step another skips).
* `BufferSnapshot`: every buffer of the model (the student's, the head's and the teacher's
  BatchNorm statistics) copied at the start of a step and put back when the step is skipped, so
  the forwards of a skipped step leave no trace either (the train-mode BatchNorms of the student
  and of the pseudo-labelling teacher update their running statistics during the forward).
* `assert_finite(trainer)`: the `save` op's check that every floating tensor of the model's state
  (parameters and buffers of student, head and teacher) is finite; an error naming the first one
  that is not.

Test-only: PRCL_TEST_NAN_STEPS (e.g. `3,4`, or `3@1` for rank 1 only) makes the listed steps'
first loss term and total NaN, as if the loss had diverged. It is read once, when this module is
first imported (the worker's first step), is not a configuration setting and must never be set
outside tests: the test suites set it in the environment of the workers they spawn.
"""

import math
import os

import torch

from .. import distributed
from ..errors import WireError

TEST_NAN_VARIABLE = "PRCL_TEST_NAN_STEPS"


class NonFiniteState(WireError):
    """The model holds NaN or inf: refused to save it."""

    type = "NonFiniteState"


def parse_test_nan_steps(text):
    """{step: set of ranks, or None for every rank} from `3,4` / `3@1,5`; a malformed value raises
    ValueError naming the variable."""
    out = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        step, _, rank = item.partition("@")
        try:
            s = int(step)
            r = int(rank) if rank else None
        except ValueError:
            raise ValueError(f"{TEST_NAN_VARIABLE}={text!r}: expected steps such as '3,4' or '3@1'") from None
        if r is None or out.get(s, set()) is None:
            out[s] = None
        else:
            out.setdefault(s, set()).add(r)
    return out


TEST_NAN_STEPS = parse_test_nan_steps(os.environ.get(TEST_NAN_VARIABLE, ""))


def inject_test_nan(step, rank, total, values):
    """(total, values) with NaN in the first term and the total at a step PRCL_TEST_NAN_STEPS names
    (test-only), else unchanged. The NaN flows into the gradients through the backward."""
    if step not in TEST_NAN_STEPS or (TEST_NAN_STEPS[step] is not None and rank not in TEST_NAN_STEPS[step]):
        return total, values
    nan = float("nan")
    values = dict(values)
    if values:
        first = next(iter(values))
        values[first] = values[first] * nan
    return total * nan, values


def _not_finite(t):
    return ~torch.isfinite(t.detach()).all()


CANCELLED = "cancelled"


def non_finite(total, values, grad_norm, params, cancelled=False):
    """The names of what is not finite on any rank (total, terms by name, 'gradients'), in that order;
    and CANCELLED last when any rank's request was cancelled (its deadline passed): that flag rides
    the same all-reduce, so no rank applies a step another drops."""
    names = ["total"] + list(values) + ["gradients", CANCELLED]
    flags = [_not_finite(total)] + [_not_finite(torch.as_tensor(v)) for v in values.values()]
    device = total.device
    if grad_norm is not None:
        flags.append(torch.tensor(not math.isfinite(grad_norm), device=device))
    else:
        norms = [p.grad.detach().float().norm() for p in params if p.grad is not None]
        flags.append(_not_finite(torch.stack(norms).norm()) if norms else torch.tensor(False, device=device))
    flags.append(torch.tensor(bool(cancelled), device=device))
    packed = torch.stack([f.to(device) for f in flags]).to(torch.int32)
    if distributed.world() > 1:
        packed = distributed.all_reduce_max(packed, kind="guard")
    return [n for n, bad in zip(names, packed.tolist()) if bad]


class BufferSnapshot:
    """Every buffer of `module`, copied now; `restore()` writes them back."""

    def __init__(self, module):
        self.buffers = list(module.buffers())
        with torch.no_grad():
            self.saved = [b.detach().clone() for b in self.buffers]

    def restore(self):
        with torch.no_grad():
            for b, s in zip(self.buffers, self.saved):
                b.copy_(s)


def assert_finite(trainer):
    """Raise NonFiniteState naming the first floating tensor of the model's state (student, head,
    teacher: parameters and buffers) that holds NaN or inf."""
    named = [(k, v) for k, v in trainer.net.state_dict().items() if torch.is_tensor(v) and v.is_floating_point()]
    if not named:
        return
    with torch.no_grad():
        bad = torch.stack([_not_finite(v) for _, v in named]).nonzero().flatten().tolist()
    if bad:
        name = named[bad[0]][0]
        raise NonFiniteState(f"refused to save: the model's {name} holds NaN or inf ({len(bad)} of {len(named)} "
                             f"tensors are not finite); the run's earlier checkpoint is left as it was")
