"""Name -> object registries with Dassl's interface (``register``, ``get``, ``registered_names``).

Dassl raises on a duplicate name; vlpeft keeps the object registered first and logs the clash, so importing
``vlpeft.trainers`` inside a CoOp / MaPLe / PromptSRC checkout that registers its own ``CoOp`` never crashes.
"""
import difflib


class Registry:
    def __init__(self, name):
        self._name = name
        self._obj_map = {}

    def _do_register(self, name, obj, force=False):
        if name in self._obj_map and not force:
            if self._obj_map[name] is not obj:
                print(f'vlpeft: "{name}" is already registered in the {self._name} registry '
                      f"(from {getattr(self._obj_map[name], '__module__', '?')}); keeping it")
            return
        self._obj_map[name] = obj

    def register(self, obj=None, force=False):
        if obj is None:
            def wrapper(fn_or_class):
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class
            return wrapper
        self._do_register(obj.__name__, obj, force=force)
        return obj

    def get(self, name):
        if name not in self._obj_map:
            raise KeyError(f'Object name "{name}" does not exist in "{self._name}" registry')
        return self._obj_map[name]

    def registered_names(self):
        return list(self._obj_map.keys())

    def __contains__(self, name):
        return name in self._obj_map


def check_availability(requested, available, kind="name"):
    """Raise a ValueError naming the valid choices (and the closest one) when ``requested`` is unknown."""
    available = list(available)
    if requested in available:
        return
    close = difflib.get_close_matches(requested, available, n=1)
    hint = f' Did you mean "{close[0]}"?' if close else ""
    raise ValueError(f'Unknown {kind} "{requested}".{hint} Valid {kind}s: {", ".join(sorted(available))}')


TRAINER_REGISTRY = Registry("TRAINER")
DATASET_REGISTRY = Registry("DATASET")
EVALUATOR_REGISTRY = Registry("EVALUATOR")
