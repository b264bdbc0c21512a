"""Importing this package registers every vlpeft trainer (and dataset) in the active engine's registries."""
import vlpeft.datasets  # noqa: F401
import vlpeft.testbed.datasets  # noqa: F401

from . import cocoop, coop, dip, dpc, dpdlora, dpl, dsra, ivlp, kgcoop, maple, prograd, promptsrc, zsclip  # noqa: F401
