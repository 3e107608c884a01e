"""The case core every channel shares; other parts use what is named here, never its modules.

- `CaseCore`: create a case (idempotent, numbered, placed, deadline-timed), act on it
  through the workflow state machine, read it as its viewer may see it.
- `NewCase`, `ActionIn`, `CaseOut`: the validated shapes in and out (`NO_NUL`: the pattern
  that keeps NUL characters out of strings).
- Authorization for every entry point: `require`, `allowed`, `scope`, `Forbidden`.
- `kpi_report`: CJ/T 292 indicators per district, unit or category.
- The outbox: `enqueue_effect` (an outside effect as a row, in the caller's transaction),
  `register_effect` (who performs a kind), `claim_due_effects` / `perform_effect` / `EffectClaim`
  for a channel that works its own kind (SMS), `EffectError` / `PermanentEffectError`.
- `install_open311`: the Open311 GeoReport v2 API over the core.
- Placement: `Router`, `placement_summary`, `load_settings_gazetteer`; satisfaction callbacks:
  `callback_slot`; named counters: `next_in_sequence`.
"""
from case_bridge.authz import Forbidden, allowed, require, scope
from case_bridge.catalogue import Catalogue, CatalogueError, Category, load_catalogue
from case_bridge.duplicates import dismiss as dismiss_link
from case_bridge.kpi import LABELS as KPI_LABELS, KpiRow, kpi_report
from case_bridge.models import Case, CaseEvent, CaseLink, HandlingUnit, OutboxItem
from case_bridge.numbering import next_in_sequence
from case_bridge.open311 import install_open311
from case_bridge.outbox import Claim as EffectClaim
from case_bridge.outbox import EffectError, PermanentEffectError, register_effect
from case_bridge.outbox import claim_due as claim_due_effects
from case_bridge.outbox import enqueue as enqueue_effect
from case_bridge.outbox import perform as perform_effect
from case_bridge.placement import INSTALLED_INDEX, Router, load_settings_gazetteer, placement_summary
from case_bridge.schemas import NO_NUL, ActionIn, CaseOut, NewCase
from case_bridge.seed import seed_units
from case_bridge.service import (CaseCore, CaseInputError, CaseNotFound, CreateResult, IdempotencyConflict,
                                 callback_slot)
from case_bridge.workflow import OPEN_STATES, STATES, TRANSITIONS, WorkflowError

__all__ = [
    "INSTALLED_INDEX", "KPI_LABELS", "NO_NUL", "OPEN_STATES", "STATES", "TRANSITIONS",
    "ActionIn", "Case", "CaseCore", "CaseEvent", "CaseInputError", "CaseLink", "CaseNotFound", "CaseOut",
    "Catalogue", "CatalogueError", "Category", "CreateResult", "EffectClaim", "EffectError", "Forbidden", "HandlingUnit",
    "IdempotencyConflict", "KpiRow", "NewCase", "OutboxItem", "PermanentEffectError", "Router", "WorkflowError",
    "allowed", "callback_slot", "claim_due_effects", "dismiss_link", "enqueue_effect", "install_open311", "kpi_report", "load_catalogue",
    "load_settings_gazetteer", "next_in_sequence", "perform_effect", "placement_summary", "register_effect", "require",
    "scope", "seed_units",
]
