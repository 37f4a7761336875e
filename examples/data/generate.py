#!/usr/bin/env python3
"""Writes accounts.jsonl: the example accounts `sluice demo` syncs.

Deterministic (fixed seed). Most accounts are valid; some carry the data errors a real CRM
refuses (a malformed email, a name too long, a missing name, a negative revenue, a parent
that does not exist), some have no parent CRM id at all (Zuora's DACO-02), and two source
rows have no key. Run it again only to change the data: `python3 generate.py`.
"""
import json
import random
from pathlib import Path

N = 3000
PARENTS = [f"001PARENT{i:05d}" for i in range(50)]
INDUSTRIES = ["Banking", "Retail", "Energy", "Media", "Healthcare", "Education", "Logistics"]
WORDS = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay",
         "Soylent", "Cyberdyne", "Tyrell", "Wonka", "Gringotts", "Oceanic", "Massive"]


def account(i, rng):
    name = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {i}"
    domain = name.split()[0].lower() + ".example.com"
    record = {
        "id": f"ACC-{i:05d}",
        "Name": name,
        "Email": f"billing{i}@{domain}",
        "Phone": f"+1-555-{rng.randrange(1000, 9999)}",
        "Industry": rng.choice(INDUSTRIES),
        "AnnualRevenue": rng.randrange(10_000, 50_000_000),
        "ParentCrmId": rng.choice(PARENTS),
    }
    roll = rng.random()
    if roll < 0.030:
        record["Email"] = f"billing{i}@nopain,nogain.com"      # INVALID_EMAIL_ADDRESS
    elif roll < 0.040:
        record["Name"] = "The " + " ".join(WORDS) + f" Holding {i}"  # STRING_TOO_LONG (> 80)
    elif roll < 0.048:
        del record["Name"]                                     # REQUIRED_FIELD_MISSING
    elif roll < 0.053:
        record["AnnualRevenue"] = -1                           # FIELD_CUSTOM_VALIDATION_EXCEPTION
    elif roll < 0.058:
        record["ParentCrmId"] = f"001MISSING{i:05d}"           # INVALID_CROSS_REFERENCE_KEY
    elif roll < 0.078:
        record["ParentCrmId"] = ""                             # DACO-02: no parent CRM id
    return record


def main():
    rng = random.Random(20261122)
    lines = [json.dumps(account(i, rng)) for i in range(1, N + 1)]
    lines.insert(1234, json.dumps({"Name": "Row without a key", "Email": "x@example.com"}))
    lines.insert(2345, json.dumps({"id": "", "Name": "Row with an empty key"}))
    out = Path(__file__).with_name("accounts.jsonl")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} rows to {out}")


if __name__ == "__main__":
    main()
