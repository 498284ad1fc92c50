"""Certification engine: sound certified radii (root search), PGD attacks, cascade over verifiers.

Public API::

    root_search(fn, eps_max, rtol=1e-4, atol=1e-9, max_passes=60, init=None, f0=None, ...) -> SearchResult
    certified_radii(model, x, y, eps_max, method="ibp", rtol=1e-4, ..., logits=None, bn_stats=None,
                    init=None) -> RadiusResult
    pgd(model, x, y, eps_or_box, loss="ce"|"margin", steps=10, step_size=0.25, restarts=1, ...) -> x_adv
    pgd_attack / attack_success / attack_radii
    certify(model, split, eps_max, eps_grid, verifiers=..., ...) -> CertifyReport   (engine)
    certify_run(run_dir, verifier="cascade", ...) -> card dict                      (run)
"""

from actbench.certify.attack import AttackRadii, attack_radii, attack_success, eval_mode, margins, pgd, pgd_attack
from actbench.certify.radius import RadiusResult, SearchResult, certified_radii, clean_margin, root_search

__all__ = [
    "AttackRadii",
    "RadiusResult",
    "SearchResult",
    "attack_radii",
    "attack_success",
    "certified_radii",
    "clean_margin",
    "eval_mode",
    "margins",
    "pgd",
    "pgd_attack",
    "root_search",
]
