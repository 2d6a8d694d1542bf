"""The declared loss graph: terms from the driver's spec, checked once at configure, run each step.

A term names an op of the fixed registry (losses.LOSS_OPS), its inputs by reference
(`model.<output>`, `batch.<tensor>` or `term.<name>`), params and a weight the driver resolves
every step. Problems are found at configure time and named by term: an unknown op, a missing or
extra input, an unknown reference, a cycle, a param out of range.
"""

import fastjsonschema

from .errors import WireError
from .losses import LOSS_OPS


class SpecError(WireError):
    type = "SpecError"


class LossGraph:
    def __init__(self, spec, schemas, model_outputs, batch_tensors):
        schemas.loss_spec(spec)
        self.terms = [t for t in spec["terms"] if t.get("enabled", True)]
        self.param_checks = schemas.loss_params
        names = [t["name"] for t in spec["terms"]]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise SpecError(f"loss term names must be unique; repeated: {sorted(dup)}", "loss.terms")
        by_name = {t["name"]: t for t in self.terms}
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
                known = {"model": model_outputs, "batch": batch_tensors, "term": by_name}[space]
                if name not in known:
                    raise SpecError(f"{where}: input {arg} = {ref} names nothing; {space}.* has {', '.join(sorted(known))}",
                                    f"loss.terms[{i}].inputs.{arg}")
            self.check_params(term, term.get("params", {}), i)
        self.order = self._topological(by_name)

    def check_params(self, term, params, index=None):
        where = f"loss term '{term['name']}'"
        try:
            self.param_checks[term["op"]](params)
        except fastjsonschema.JsonSchemaValueException as exc:
            path = "params" + (exc.name or "data")[len("data"):]
            raise SpecError(f"{where}: {exc.message.replace(exc.name or 'data', path, 1)}",
                            f"loss.terms[{index}].{path}" if index is not None else path) from None

    def _topological(self, by_name):
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

    @property
    def names(self):
        return [t["name"] for t in self.terms]

    def terms_needing_more_than(self, available):
        """Names of the enabled terms that read a model output or batch tensor outside `available`."""
        return [t["name"] for t in self.terms
                if any(not ref.startswith("term.") and ref not in available for ref in t["inputs"].values())]

    def run(self, model, batch, weights, overrides=None, generator=None):
        """(total, {name: value tensor}, {name: stats}). Every enabled term needs a weight."""
        missing = [n for n in self.names if n not in weights]
        if missing:
            raise SpecError(f"train_step.weights has no value for loss terms {missing}", "weights")
        values, stats = {}, {}
        total = None
        for term in self.order:
            params = dict(term.get("params", {}))
            if overrides and term["name"] in overrides:
                params.update(overrides[term["name"]])
                self.check_params(term, params)
            args = {}
            for arg, ref in term["inputs"].items():
                space, _, name = ref.partition(".")
                args[arg] = {"model": model, "batch": batch, "term": values}[space][name]
            out = LOSS_OPS[term["op"]].fn(generator=generator, **args, **params)
            value, extra = out if isinstance(out, tuple) else (out, None)
            values[term["name"]] = value
            if extra:
                stats[term["name"]] = extra
            weighted = value * float(weights[term["name"]])
            total = weighted if total is None else total + weighted
        return total, values, stats
