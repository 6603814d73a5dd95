"""A deterministic, realistic mail corpus: mixed sizes, HTML alternatives, attachments, non-ASCII names and
subjects (RFC 2047), reply threads, CRM tags like #1234#, ~20 % outbound (Sent), dated within the last days."""
from __future__ import annotations

import datetime as dt
import functools
import multiprocessing
import os
import pickle
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.mailfactory import make_message

OWNER = "Alice Nováková <alice@acme-crm.example>"
_FIRST = ["Jan", "Petra", "Jiří", "Zuzana", "Łukasz", "Günther", "Søren", "Émilie", "Mark", "Olga",
          "Ярослав", "山田", "Anna", "Tomáš", "Chloé", "Björn"]
_LAST = ["Novák", "Dvořáková", "Müller", "Šťastný", "Kowalski", "O'Brien", "Jørgensen", "Lefèvre", "Smith",
         "Иванова", "太郎", "Černý", "Horváth"]
DOMAINS = ["acme.example", "globex.example", "initech.example", "umbrella.example", "stark.example",
            "wayne.example", "gmail.example", "seznam.example"]
_SUBJECTS = ["Poptávka na dodávku {n} ks", "Re: Nabídka #{tag}#", "Meeting on {day}", "Faktura {n}/2026",
             "Objednávka č. {n} — potvrzení", "Angebot für Projekt {n}", "Quarterly report Q{q}",
             "Dotaz k zakázce #{tag}#", "Příloha: smlouva", "Invoice overdue", "Einladung: Workshop am {day}",
             "Žádost o schůzku ✔", "見積もりのお願い {n}", "Ticket [#T{n}] reopened"]
_WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "
          "dolore magna aliqua dobrý den děkujeme za zprávu s pozdravem vielen dank für ihre anfrage").split()


@dataclass(frozen=True)
class CorpusMessage:
    folder: str          # "INBOX" | "Sent"
    raw: bytes
    date: dt.datetime
    flags: tuple[str, ...]


_TEXT = " ".join(random.Random(0).choice(_WORDS) for _ in range(8000))
_TEXT = "\n".join(_TEXT[i:i + 76] for i in range(0, len(_TEXT), 76))


def _person(rng: random.Random) -> str:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    local = f"{rng.choice(['info', 'sales', 'jan', 'petra', 'office', 'm.k', 'support'])}{rng.randint(1, 99)}"
    return f"{first} {last} <{local}@{rng.choice(DOMAINS)}>"


def _body(rng: random.Random, size: int) -> str:
    offset = rng.randrange(0, len(_TEXT) - size)
    return _TEXT[offset:offset + size] + "\n"


def _message_id(seed: int, index: int) -> str:
    return f"<bench-{seed}-{index}@mail.example>"


def _one(args: tuple[int, int, float, int, float]) -> CorpusMessage:
    index, seed, now_ts, days, sent_share = args
    contacts = _contacts(seed)
    rng = random.Random(seed * 1_000_003 + index)
    now = dt.datetime.fromtimestamp(now_ts, dt.timezone.utc)
    when = now - dt.timedelta(seconds=rng.randint(60, days * 86400))
    outbound = rng.random() < sent_share
    peer = rng.choice(contacts)
    subject = rng.choice(_SUBJECTS).format(n=rng.randint(100, 9999), tag=rng.randint(1000, 1999),
                                           day=when.strftime("%d.%m."), q=rng.randint(1, 4))
    roll = rng.random()
    body_size = 300 if roll < 0.5 else 3_000 if roll < 0.85 else 20_000
    html = None
    if rng.random() < 0.35:
        html = "<html><body><p>" + _body(rng, body_size).replace("\n", "</p><p>") + "</p></body></html>"
    attachments = []
    if rng.random() < 0.12:
        size = rng.choice([15_000, 60_000, 150_000]) if rng.random() < 0.98 else 1_500_000
        name = rng.choice(["nabídka.pdf", "smlouva.docx", "photo.jpg", "report.xlsx", "výkres.dwg"])
        attachments.append((name, "application/octet-stream", rng.randbytes(size)))
    reply_to = _message_id(seed, rng.randrange(index)) if index and rng.random() < 0.25 else None
    raw = make_message(subject=("Re: " + subject) if reply_to else subject,
                       from_=OWNER if outbound else peer, to=peer if outbound else OWNER,
                       cc=rng.choice(contacts) if rng.random() < 0.15 else None, date=when,
                       body=_body(rng, body_size), html=html, attachments=attachments,
                       message_id=_message_id(seed, index), in_reply_to=reply_to,
                       references=[reply_to] if reply_to else None)
    flags = ("\\Seen",) if outbound or rng.random() < 0.6 else ()
    return CorpusMessage("Sent" if outbound else "INBOX", raw, when, flags)


@functools.lru_cache(maxsize=4)
def _contacts(seed: int) -> list[str]:
    rng = random.Random(seed)
    return [_person(rng) for _ in range(300)]


def generate(count: int, *, now: dt.datetime, days: int = 6, sent_share: float = 0.2, seed: int = 1,
             workers: int | None = None) -> list[CorpusMessage]:
    """`count` messages dated in the `days` before `now`, oldest first (built in parallel: the email
    package's header folding costs ~10 ms a message)."""
    jobs = [(i, seed, now.timestamp(), days, sent_share) for i in range(count)]
    with multiprocessing.Pool(workers or os.cpu_count() or 1) as pool:
        out = pool.map(_one, jobs, chunksize=100)
    out.sort(key=lambda m: m.date)
    return out


def load_corpus(count: int, seed: int, now: dt.datetime) -> list[CorpusMessage]:
    """`generate(count, now, seed)`, cached in the temp dir for the hour (every ingest bench shares the file)."""
    cache = Path(tempfile.gettempdir()) / f"mailbridge-bench-corpus-{count}-{seed}-{now:%Y%m%d%H}.pickle"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    corpus = generate(count, now=now, seed=seed)
    cache.write_bytes(pickle.dumps(corpus))
    return corpus
