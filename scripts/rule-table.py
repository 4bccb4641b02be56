#!/usr/bin/env python3
"""Prints the README's table of Elastic's Microsoft 365 rules: each rule of
../shared/corpus/elastic-rules with its type and how ualhunt runs it.

    python3 scripts/rule-table.py [DIR]
"""
import glob
import os
import sys
import tomllib

KINDS = {
    "query": "KQL query",
    "new_terms": "KQL, new terms (replayed over the matches' times)",
    "threshold": "KQL, threshold (replayed over the matches' times)",
    "esql": "ES\\|QL (replayed run by run)",
}


def kind(rule):
    t = rule.get("type")
    if t == "eql":
        seq = rule.get("query", "").lstrip().startswith("sequence")
        return "EQL sequence (replayed in time order)" if seq else "EQL event query"
    return KINDS.get(t, t)


def needs(rule):
    q = rule.get("query", "")
    if "source.geo." in q or "source.as." in q:
        return "`--geoip-db` for its GeoIP fields"
    if "user_agent.name" in q or "user_agent.os." in q or "user_agent.version" in q:
        return "user-agent parsing (built in)"
    return ""


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "../shared/corpus/elastic-rules"
    print("| rule | type | building block | needs |")
    print("|---|---|---|---|")
    for path in sorted(glob.glob(os.path.join(folder, "*.toml"))):
        with open(path, "rb") as f:
            rule = tomllib.load(f)["rule"]
        name = rule["name"].replace("|", "\\|")
        block = "yes" if rule.get("building_block_type") else ""
        print(f"| {name} | {kind(rule)} | {block} | {needs(rule)} |")


if __name__ == "__main__":
    main()
