"""A non-editable install (``pip install .``) carries everything the commands need: the configs, the testbed CLIP."""
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory):
    """The package as a wheel installs it: built from a copy of the tracked files (the checkout is not touched)."""
    if shutil.which("git") is None or not osp.isdir(osp.join(REPO, ".git")):
        pytest.skip("needs a git checkout")
    try:
        import setuptools  # noqa: F401
        import wheel  # noqa: F401
    except ImportError:
        pytest.skip("building a wheel offline needs setuptools and wheel in the environment")
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        target = src / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if osp.islink(osp.join(REPO, rel)):
            os.symlink(os.readlink(osp.join(REPO, rel)), target)
        elif osp.isfile(osp.join(REPO, rel)):
            shutil.copy2(osp.join(REPO, rel), target)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(src)], check=True, capture_output=True)
    (whl,) = list(dist.glob("vlpeft-*.whl"))
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(whl) as z:
        z.extractall(site)
        names = set(z.namelist())
    return site, names


def test_wheel_holds_every_config_and_the_testbed_model(wheel_site):
    _, names = wheel_site
    shipped = {osp.relpath(osp.join(d, f), REPO).replace(os.sep, "/")
               for d, _, fs in os.walk(osp.join(REPO, "vlpeft", "configs")) for f in fs if f.endswith(".yaml")}
    assert shipped and shipped <= names
    assert {"vlpeft/testbed/vlpeft-testbed.pt", "vlpeft/testbed/vlpeft-testbed.json",
            "vlpeft/datasets/imagenet_classnames.txt"} <= names


def test_installed_package_finds_its_configs_from_anywhere(wheel_site, tmp_path):
    site, _ = wheel_site
    code = ("import vlpeft, vlpeft.resources as r; "
            "print(vlpeft.__file__); print(r.resolve_config_file('configs/trainers/CoOp/vit_b16_ep50.yaml'))")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0].startswith(str(site)) and out[1].startswith(str(site)) and osp.isfile(out[1])
    usage = subprocess.run([sys.executable, "-m", "vlpeft", "--help"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, check=True).stdout
    assert usage.startswith("usage: python train.py") and "CoOp" in usage
