"""The SMS channel: connectors (SMPP first), inbound classification, outbound from the outbox.

Other parts use what is named here:
- `SmsService`: the SMPP link, MO storage, receipts and the sms outbox as one running service.
- The agents' SMS work list: `open_work_items`, `recent_work_items`, `work_item_to_case`, `merge_work_item`,
  `reply_to_work_item` (`WorkItemError` when the item is not open); `messages_of_case`: a case's SMS thread;
  `load_templates` and `reply_parts`: the SMS texts, and how many parts an agent's reply makes.
- `SmsMessage`, `SmsPart`, `SmsOptOut`, `SmsWorkItem`: the channel's tables.
"""
from sms.inbox import WorkItemError
from sms.inbox import convert as work_item_to_case
from sms.inbox import merge as merge_work_item
from sms.inbox import messages_of_case
from sms.inbox import open_items as open_work_items
from sms.inbox import recent_items as recent_work_items
from sms.inbox import reply as reply_to_work_item
from sms.models import SmsMessage, SmsOptOut, SmsPart, SmsWorkItem
from sms.service import SmsService
from sms.templates import load_templates, reply_parts

__all__ = ["SmsMessage", "SmsOptOut", "SmsPart", "SmsService", "SmsWorkItem", "WorkItemError", "merge_work_item",
           "load_templates", "messages_of_case", "open_work_items", "recent_work_items", "reply_parts", "reply_to_work_item",
           "work_item_to_case"]
