"""GetTransactionStatus (E14): is a transaction still ongoing, and are messages about it still
queued for the CSMS? Read-only: the open transactions and the durable outbound queue."""

from __future__ import annotations

from typing import Any

from bridge.rpc.request import Request
from bridge.station.transactions import Transactions
from bridge.store import QueueTable


class TransactionStatus:
    def __init__(self, transactions: Transactions, queue: QueueTable) -> None:
        self.transactions = transactions
        self.queue = queue

    def get_transaction_status(self, request: Request) -> dict[str, Any]:
        transaction_id = request.payload.get("transactionId")
        if transaction_id is None:
            # E14.FR.06: no ongoingIndicator; E14.FR.07 / E14.FR.08: any TransactionEvent queued.
            return {"messagesInQueue": self.queue.has_transaction_event()}
        return {
            # E14.FR.04 / E14.FR.05: TransactionEvents of this transaction not yet delivered.
            "messagesInQueue": self.queue.has_transaction_event(transaction_id),
            # E14.FR.02: ongoing; E14.FR.03 (ended) and E14.FR.01 (unknown): false.
            "ongoingIndicator": self.transactions.open_transaction(transaction_id) is not None,
        }
