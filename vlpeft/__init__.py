"""vlpeft: parameter-efficient tuning methods for CLIP as Dassl trainers (CoOp / MaPLe / PromptSRC ecosystem).

Drop-in use inside a CoOp-family checkout::

    import vlpeft.trainers          # registers vlpeft's trainers and datasets in Dassl's registries
    vlpeft.extend_cfg(cfg)          # adds their config nodes
"""
__version__ = "0.1.0"


def extend_cfg(cfg):
    from vlpeft.config import extend_cfg as _extend

    return _extend(cfg)
