"""Attacks on images and texts, found by name in one registry (`robustclip.attacks.registry`).

Importing the package registers the built-in attacks (it imports torch, never open_clip or transformers):
image attacks `apgd-ce`, `apgd-dlr`, `apgd-t`, `apgd-ce-t`, `pgd` (the cascade's), the embedding attack `apgd`
(retrieval, drift), and the text attacks `charmer`, `leaf`, `bruteforce`. This file is written by hand (not
exported from a notebook): it only re-exports the public surface of the modules below. The functions named like
their modules stay in them (`robustclip.attacks.pgd.pgd`, `.apgd.apgd`, `.charmer.charmer`, `.bruteforce.bruteforce`):
re-exported here they would hide the modules (`import robustclip.attacks.pgd as m` would bind the function).
"""

from .base import (
    WARNINGS,
    EpsZeroWarning,
    GradientWarning,
    RandomizedModelWarning,
    RandomNoiseWarning,
    RobustnessWarning,
    SoftmaxOutputWarning,
    TooFewClassesWarning,
    TrainModeWarning,
    attack_view,
    eval_mode,
    input_grad,
    lp_norm,
    lp_normalize,
    project,
)
from .registry import ATTACK_KINDS, AttackEntry, attack_names, get_attack, make_attack, register_attack
from .losses import Objective, get_objective
from .pgd import PGDAttack, PGDStep
from .apgd import APGD, APGDResult, APGDSchedule, apgd_targeted, embedding_apgd
from .cascade import AttackSpec, Cascade, CascadeResult, parse_attack
from .charmer import CharmerSearch, TextAttackResult, embedding_objective, margin_objective
from .leaf import WordConstraint, leaf_attack
from . import bruteforce  # registers the text attack `bruteforce` (its function: bruteforce.bruteforce)

__all__ = [
    # what every attack shares (robustclip.attacks.base)
    'WARNINGS', 'RobustnessWarning', 'GradientWarning', 'EpsZeroWarning', 'RandomNoiseWarning', 'TooFewClassesWarning',
    'TrainModeWarning', 'RandomizedModelWarning', 'SoftmaxOutputWarning', 'eval_mode', 'lp_norm', 'lp_normalize',
    'project', 'input_grad', 'attack_view',
    # the registry
    'ATTACK_KINDS', 'AttackEntry', 'register_attack', 'attack_names', 'get_attack', 'make_attack',
    # image attacks and the cascade
    'Objective', 'get_objective', 'PGDAttack', 'PGDStep', 'APGD', 'APGDResult', 'APGDSchedule', 'apgd_targeted',
    'embedding_apgd', 'AttackSpec', 'parse_attack', 'Cascade', 'CascadeResult',
    # text attacks
    'TextAttackResult', 'CharmerSearch', 'margin_objective', 'embedding_objective', 'leaf_attack', 'WordConstraint',
]
