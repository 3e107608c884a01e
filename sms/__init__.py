"""The SMS channel: connectors (SMPP first), inbound classification, outbound from the outbox.

Other parts use what is named here:
- `SmsService`: the SMPP link, MO storage, receipts and the sms outbox as one running service.
- The agents' SMS work list: `open_work_items`, `work_item_to_case`, `merge_work_item`
  (`WorkItemError` when the item is not open).
- `SmsMessage`, `SmsPart`, `SmsOptOut`, `SmsWorkItem`: the channel's tables.
"""
from sms.inbox import WorkItemError
from sms.inbox import convert as work_item_to_case
from sms.inbox import merge as merge_work_item
from sms.inbox import open_items as open_work_items
from sms.models import SmsMessage, SmsOptOut, SmsPart, SmsWorkItem
from sms.service import SmsService

__all__ = ["SmsMessage", "SmsOptOut", "SmsPart", "SmsService", "SmsWorkItem", "WorkItemError", "merge_work_item",
           "open_work_items", "work_item_to_case"]
