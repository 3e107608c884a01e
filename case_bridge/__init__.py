"""The case core every channel shares.

- `CaseCore`: create a case (idempotent, numbered, placed, deadline-timed), act on it
  through the workflow state machine, read it as its viewer may see it.
- `NewCase`, `ActionIn`, `CaseOut`: the validated shapes in and out.
- `kpi_report`: CJ/T 292 indicators per district, unit or category.
- `outbox.enqueue` / `register_effect`: outside effects as rows, worked by Celery.
- `open311_router`: the Open311 GeoReport v2 API over the core.
"""
from case_bridge import outbox
from case_bridge.catalogue import Catalogue, CatalogueError, Category, load_catalogue
from case_bridge.kpi import LABELS as KPI_LABELS, KpiRow, kpi_report
from case_bridge.models import Case, CaseEvent, CaseLink, HandlingUnit, OutboxItem
from case_bridge.outbox import EffectError, PermanentEffectError, register_effect
from case_bridge.schemas import ActionIn, CaseOut, NewCase
from case_bridge.seed import seed_units
from case_bridge.service import CaseCore, CaseInputError, CaseNotFound, CreateResult, IdempotencyConflict
from case_bridge.workflow import OPEN_STATES, STATES, TRANSITIONS, WorkflowError

__all__ = [
    "ActionIn", "Case", "CaseCore", "CaseEvent", "CaseInputError", "IdempotencyConflict", "CaseLink", "CaseNotFound", "CaseOut",
    "Catalogue", "CatalogueError", "Category", "CreateResult", "EffectError", "HandlingUnit", "KPI_LABELS",
    "KpiRow", "NewCase", "OPEN_STATES", "OutboxItem", "PermanentEffectError", "STATES", "TRANSITIONS", "WorkflowError",
    "kpi_report", "load_catalogue", "outbox", "register_effect", "seed_units",
]
