"""The declared loss graph: terms from the driver's spec, checked once at configure, run each step.

A term names an op of the fixed registry (losses.LOSS_OPS) and its inputs by reference
(`model.<output>`, `batch.<tensor>` or `term.<name>`). At configure an unknown op, a missing or
extra input, an unknown reference, a repeated name or a cycle is refused, named by term. The
spec's params are the driver's (they may follow schedules); every step's request carries each
enabled term's weight and resolved params, checked against the op's param schema.
"""

from .errors import WireError
from .losses import LOSS_OPS


class SpecError(WireError):
    type = "SpecError"


class LossGraph:
    def __init__(self, spec, schemas):
        schemas.loss_spec(spec)
        self.schemas = schemas
        self.terms = [t for t in spec["terms"] if t.get("enabled", True)]
        self.names = [t["name"] for t in self.terms]
        names = [t["name"] for t in spec["terms"]]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise SpecError(f"loss term names must be unique; repeated: {sorted(dup)}", "loss.terms")
        by_name = {t["name"]: t for t in self.terms}
        known = {"model": schemas.model_outputs, "batch": schemas.batch_tensors, "term": by_name}
        for i, term in enumerate(spec["terms"]):
            where = f"loss.terms[{i}] ('{term['name']}')"
            op = LOSS_OPS.get(term["op"])
            if op is None:
                raise SpecError(f"{where}: unknown loss op '{term['op']}'; ops: {', '.join(sorted(LOSS_OPS))}",
                                f"loss.terms[{i}].op")
            given, needed = set(term["inputs"]), set(op.inputs)
            if given != needed:
                raise SpecError(f"{where}: op '{term['op']}' takes inputs {sorted(needed)}; "
                                f"missing {sorted(needed - given)}, unknown {sorted(given - needed)}",
                                f"loss.terms[{i}].inputs")
            for arg, ref in term["inputs"].items():
                space, _, name = ref.partition(".")
                if name not in known[space]:
                    raise SpecError(f"{where}: input {arg} = {ref} names nothing; "
                                    f"{space}.* has {', '.join(sorted(known[space]))}", f"loss.terms[{i}].inputs.{arg}")
        self.order = _topological(by_name)

    def model_refs(self):
        """The model outputs (`model.<name>`) the enabled terms read."""
        return frozenset(ref.partition(".")[2] for t in self.terms for ref in t["inputs"].values()
                         if ref.startswith("model."))

    def needing_unlabeled(self):
        """Names of the enabled terms that read a model output or batch tensor a labeled-only step lacks."""
        return [t["name"] for t in self.terms
                if any(not ref.startswith("term.") and ref not in self.schemas.labeled_only
                       for ref in t["inputs"].values())]

    def check_request(self, weights, params):
        """Refuse a step whose weights or params do not name exactly the enabled terms, or whose
        params do not fit a term's op."""
        for field, given in (("weights", weights), ("params", params)):
            missing = [n for n in self.names if n not in given]
            if missing:
                raise SpecError(f"train_step.{field} has no value for loss terms {missing}", field)
            extra = [n for n in given if n not in self.names]
            if extra:
                raise SpecError(f"train_step.{field} names {extra}, not enabled loss terms {self.names}",
                                f"{field}.{extra[0]}")
        for term in self.terms:
            self.schemas.check_loss_params(term["op"], params[term["name"]], f"loss term '{term['name']}'",
                                           f"params.{term['name']}", SpecError)

    def run(self, model, batch, weights, params, generator, prototype_reduce=None):
        """(total, {name: value tensor}, {name: stats}), each term run with its params from the request.
        `prototype_reduce` (ops that take it: prcl) sums PRCL's prototype statistics over ranks."""
        extras = {"prototype_reduce": prototype_reduce}
        values, stats = {}, {}
        sources = {"model": model, "batch": batch, "term": values}
        total = None
        for term in self.order:
            args = {}
            for arg, ref in term["inputs"].items():
                space, _, name = ref.partition(".")
                args[arg] = sources[space][name]
            op = LOSS_OPS[term["op"]]
            out = op.fn(generator=generator, **{k: extras[k] for k in op.extras}, **args, **params[term["name"]])
            value, extra = out if isinstance(out, tuple) else (out, None)
            values[term["name"]] = value
            if extra:
                stats[term["name"]] = extra
            weighted = value * float(weights[term["name"]])
            total = weighted if total is None else total + weighted
        return total, values, stats


def _topological(by_name):
    order, state = [], {}

    def visit(name, chain):
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise SpecError(f"loss terms form a cycle: {' -> '.join(chain + [name])}", "loss.terms")
        state[name] = "visiting"
        for ref in by_name[name]["inputs"].values():
            space, _, dep = ref.partition(".")
            if space == "term":
                visit(dep, chain + [name])
        state[name] = "done"
        order.append(by_name[name])

    for name in by_name:
        visit(name, [])
    return order
