"""Files that ship inside the package: the trainer and dataset configs (``vlpeft/configs``).

In a checkout, the top-level ``configs`` folder is the same folder (a link), so the CoOp-style commands
``--config-file configs/trainers/CoOp/vit_b16_ep50.yaml`` work from the repository root; after ``pip install .`` they
work from anywhere, because a relative path that does not exist under the working directory is looked up in the
package.
"""
import os.path as osp

PACKAGE_DIR = osp.dirname(osp.abspath(__file__))
CONFIG_ROOT = osp.join(PACKAGE_DIR, "configs")


def packaged_config(*parts):
    """Path of a config shipped with vlpeft, e.g. ``packaged_config("trainers", "CoOp", "testbed.yaml")``."""
    return osp.join(CONFIG_ROOT, *parts)


def resolve_config_file(path, flag="--config-file"):
    """``path`` if it is a file; else, for a relative path, the packaged config of that name (``configs/`` prefix
    optional). Raises ``FileNotFoundError`` naming the flag and every place looked at."""
    if osp.isfile(path):
        return path
    tried = [osp.abspath(path)]
    if not osp.isabs(path):
        relative = osp.normpath(path)
        if relative.split(osp.sep)[0] == "configs":
            relative = relative.split(osp.sep, 1)[1] if osp.sep in relative else ""
        candidate = packaged_config(relative)
        if osp.isfile(candidate):
            return candidate
        tried.append(candidate)
    raise FileNotFoundError(f'{flag}: config file not found: "{path}" (looked at: {", ".join(tried)}). '
                            f"Shipped configs are under {CONFIG_ROOT}.")
