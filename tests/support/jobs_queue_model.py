"""The jobs queues as the lifecycle models see them: messages with a visible-at time, SQS's
at-least-once delivery, the redrive policy parking a message after MAX_RECEIVES, and what the
lifecycle sent landing on the queue. Mixed into the models' state machines, which own
`self.clock` (a FakeClock), `self.queue` (an InMemoryJobQueue), `self.store` (an
InMemoryJobStore) and `self.messages`."""
from __future__ import annotations

from dataclasses import dataclass

from chalicelib.adapters.memory import ParkedMessage
from chalicelib.domain.job import parse_time
from chalicelib.ports import JobMessage

VISIBILITY_S = 5400  # the jobs queues' visibility timeout: a claimed message comes back after it
MAX_RECEIVES = 4  # the redrive policy's maxReceiveCount, small so the model reaches dead letters


@dataclass
class Message:
    body: JobMessage
    priority: str
    visible_at: float
    receives: int = 0


class SimulatedJobsQueue:
    def now(self) -> float:
        return self.clock.now.timestamp()

    def collect_sent(self) -> None:
        """What the lifecycle sent lands on the queue, visible after its delay."""
        for body, priority, delay in self.queue.sent:
            self.messages.append(Message(body, priority, self.now() + delay))
        self.queue.sent.clear()

    def until_next_moment(self) -> float:
        """Seconds until a message next shows or a job is next due (1 when nothing is waiting):
        the wait that reaches the model's next event without skipping past it."""
        self.collect_sent()
        moments = [m.visible_at for m in self.messages if m.visible_at > self.now()]
        moments += [parse_time(j.due_at).timestamp() for j in self.store._jobs.values()
                    if j.due_at and parse_time(j.due_at).timestamp() > self.now()]
        return min(moments) - self.now() if moments else 1

    def visible(self) -> list[Message]:
        self.collect_sent()
        return [m for m in self.messages if m.visible_at <= self.now()]

    def receive(self, message: Message) -> bool:
        """One receive of `message`: False when it was its (MAX_RECEIVES + 1)th, the redrive
        policy parking it on the dead-letter queue instead of delivering it."""
        message.receives += 1
        if message.receives > MAX_RECEIVES:
            self.messages.remove(message)
            self.queue.dead.append(ParkedMessage(message.body, None, self.queue.priority_of(message.priority)))
            return False
        return True

    def duplicate_or_lose(self, message: Message, fault: str) -> None:
        """SQS delivers at least once; a purge or an operator's mistake loses a message."""
        if fault == "duplicate":
            self.messages.append(Message(message.body, message.priority, message.visible_at))
        else:
            self.messages.remove(message)
