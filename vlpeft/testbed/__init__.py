"""The CPU testbed: a generated image-text world (:mod:`.world`), a tiny CLIP pretrained on it by vlpeft
(:mod:`.pretrain`, shipped as ``vlpeft-testbed.pt``; ``MODEL.BACKBONE.NAME vlpeft-testbed``), downstream datasets in
CoOp's on-disk format (:mod:`.datasets`), the accuracy tables over every trainer (:mod:`.accuracy`), the probe of
room to learn (:mod:`.probe`) and the proxy benchmark ranked against the published numbers (:mod:`.bench`,
:mod:`.proxy`)."""
import os.path as osp

MODEL_NAME = "vlpeft-testbed"
MODEL_CONFIG = osp.join(osp.dirname(osp.abspath(__file__)), f"{MODEL_NAME}.json")
CHECKPOINT = osp.join(osp.dirname(osp.abspath(__file__)), f"{MODEL_NAME}.pt")


def register_model_config():
    """Make ``open_clip.create_model("vlpeft-testbed")`` build the testbed architecture."""
    import open_clip

    if MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIG)
