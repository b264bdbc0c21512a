"""Regenerate ``imagenet_classnames.txt`` (shipped with vlpeft) from installed packages only.

* WordNet ids: timm's data info ``timm/data/_info/imagenet_synsets.txt`` (the 1000 ILSVRC-2012 synsets, sorted).
* Class names: ``open_clip.zero_shot_metadata.IMAGENET_CLASSNAMES`` (the CLIP-style names, in the same order).

The output has CoOp's ``classnames.txt`` format, one "<wnid> <class name>" line per class in sorted-wnid order.

    python -m vlpeft.datasets._make_imagenet_classnames [output path]
"""
import os.path as osp
import sys

OUTPUT = osp.join(osp.dirname(osp.abspath(__file__)), "imagenet_classnames.txt")
SPOT_CHECKS = {
    "n01440764": "tench",
    "n01443537": "goldfish",
    "n04589890": "window screen",
    "n15075141": "toilet paper",
}


def build_lines():
    import timm
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    synsets_file = osp.join(osp.dirname(timm.__file__), "data", "_info", "imagenet_synsets.txt")
    with open(synsets_file, "r") as f:
        wnids = [line.strip() for line in f if line.strip()]
    names = list(IMAGENET_CLASSNAMES)
    if len(wnids) != 1000 or len(set(wnids)) != 1000:
        raise SystemExit(f"{synsets_file}: expected 1000 distinct wnids, got {len(wnids)}")
    if wnids != sorted(wnids):
        raise SystemExit(f"{synsets_file}: the wnids are not in sorted order")
    if len(names) != 1000:
        raise SystemExit(f"open_clip IMAGENET_CLASSNAMES: expected 1000 names, got {len(names)}")
    mapping = dict(zip(wnids, names))
    for wnid, name in SPOT_CHECKS.items():
        if mapping.get(wnid) != name:
            raise SystemExit(f"spot check failed: {wnid} -> {mapping.get(wnid)!r}, expected {name!r}")
    for name in names:
        if name != name.strip() or "\n" in name:
            raise SystemExit(f"unexpected class name {name!r}")
    return [f"{wnid} {name}" for wnid, name in zip(wnids, names)]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else OUTPUT
    lines = build_lines()
    text = "\n".join(lines) + "\n"
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    import os

    os.replace(tmp, out)
    print(f"wrote {len(lines)} lines to {out}")


if __name__ == "__main__":
    main()
