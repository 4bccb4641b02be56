#!/usr/bin/env python3
"""Generate the ualhunt test fixtures under testdata/ and their expectations.

Run from anywhere:  python3 testdata/make_fixtures.py
Stdlib only, deterministic (no randomness; GUIDs are hashes of a counter, gzip
members are written with mtime=0), so running it twice gives the same bytes
with the same Python/zlib.

Two independent passes:
  1. build: every line is written together with what it is *meant* to be
     (blank / not a candidate / malformed / candidate that does not match /
     match with actor, target, bypass flag);
  2. evaluate: the files are read back from disk (compression found from magic
     bytes, not the name), split into lines and run through a from-scratch
     implementation of DESIGN.md section 2 and the rule. The script fails if
     the evaluation disagrees with the intent of any line.
The expectations (expected/*.json, EXPECTED.md) come from pass 2 only.

All tenants, users, addresses and ids are invented: contoso/fabrikam tenants,
203.0.113.0/24, 198.51.100.0/24, 192.0.2.0/24 and 2001:db8::/32 addresses.

This file, EXPECTED.md and expected/*.json never contain the rule's action
literal as one run of bytes (it is spelled OP below), so that running
`ualhunt hunt testdata/` finds no candidates in them.
"""

import datetime as dt
import gzip
import hashlib
import ipaddress
import json
import os
import shutil
import sys
import uuid
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

# The rule's action literal, split so that this file does not contain it.
OP = "Set-Mailbox" + "AuditBypassAssociation"
OP_B = OP.encode()

SYSTEM = "NT AUTHORITY\\SYSTEM (Microsoft.Exchange.ServiceHost)"  # one backslash

CONTOSO = ("contoso.onmicrosoft.com", "3f2a9c1e-7b4d-4e8a-9c6f-2d1b5a8e7c30")
FABRIKAM = ("fabrikam.onmicrosoft.com", "8d4e0b7a-1c2f-4a9e-b3d5-6f7a8b9c0d1e")

# --------------------------------------------------------------------------- ids

_counter = [0]


def guid():
    """Deterministic version-4-looking GUID (hash of a counter)."""
    _counter[0] += 1
    h = hashlib.md5(b"ualhunt-fixture-%d" % _counter[0]).digest()
    return str(uuid.UUID(bytes=h, version=4))


def puid():
    _counter[0] += 1
    h = hashlib.md5(b"ualhunt-puid-%d" % _counter[0]).hexdigest().upper()
    return "1003" + h[:12]


def sid():
    _counter[0] += 1
    h = hashlib.md5(b"ualhunt-sid-%d" % _counter[0]).digest()
    parts = [int.from_bytes(h[i : i + 4], "little") for i in (0, 4, 8, 12)]
    return "S-1-5-21-%d-%d-%d-%d" % (parts[0], parts[1], parts[2], 1000 + parts[3] % 9000)


# ------------------------------------------------------------- raw UAL records


def mbx_path(tenant, alias):
    return "EURPR05A003.prod.outlook.com/Microsoft Exchange Hosted Organizations/%s/%s" % (
        tenant[0],
        alias,
    )


def exchange_admin(ts, operation, actor, params, *, tenant=CONTOSO, status="True",
                   client_ip="203.0.113.25", object_id=None, workload="Exchange",
                   user_type=None, drop=(), extra=None, server="AM6PR05MB4321 (15.20.7362.019)"):
    """An ExchangeAdmin (RecordType 1) record in the key order the API uses."""
    if user_type is None:
        user_type = 3 if actor.startswith("NT AUTHORITY") else 2
    r = {
        "CreationTime": ts,
        "Id": guid(),
        "Operation": operation,
        "OrganizationId": tenant[1],
        "RecordType": 1,
        "ResultStatus": status,
        "UserKey": actor if actor.startswith("NT AUTHORITY") else puid(),
        "UserType": user_type,
        "Version": 1,
        "Workload": workload,
        "ClientIP": client_ip,
        "ObjectId": object_id if object_id is not None else "",
        "UserId": actor,
        "AppId": "",
        "ClientAppId": "",
        "ExternalAccess": actor.startswith("NT AUTHORITY"),
        "OrganizationName": tenant[0],
        "OriginatingServer": server,
        "Parameters": params,
        "SessionId": guid(),
    }
    if client_ip is None:
        del r["ClientIP"]
    for k in drop:
        r.pop(k, None)
    if extra:
        r.update(extra)
    return r


def bypass(ts, actor, identity, flag="True", *, tenant=CONTOSO, alias=None, **kw):
    """A Set-...AuditBypassAssociation record (the thing the rule hunts)."""
    params = [{"Name": "Identity", "Value": identity}]
    if flag is not None:
        params.append({"Name": "AuditBypassEnabled", "Value": flag})
    alias = alias or identity.split("@")[0]
    kw.setdefault("object_id", mbx_path(tenant, alias))
    return exchange_admin(ts, OP, actor, params, tenant=tenant, **kw)


def set_mailbox(ts, actor, identity, params_extra=None, *, tenant=CONTOSO, **kw):
    params = [{"Name": "Identity", "Value": identity}]
    params += params_extra or [
        {"Name": "AuditEnabled", "Value": "True"},
        {"Name": "AuditOwner", "Value": "MailboxLogin,HardDelete,SoftDelete,Update,Move"},
    ]
    kw.setdefault("object_id", mbx_path(tenant, identity.split("@")[0]))
    return exchange_admin(ts, "Set-Mailbox", actor, params, tenant=tenant, **kw)


def new_inbox_rule(ts, owner, rule_name, *, tenant=CONTOSO, client_ip="198.51.100.77:52014"):
    params = [
        {"Name": "AlwaysDeleteOutlookRulesBlob", "Value": "False"},
        {"Name": "Force", "Value": "False"},
        {"Name": "Name", "Value": rule_name},
        {"Name": "SubjectContainsWords", "Value": "invoice;payment;wire"},
        {"Name": "MoveToFolder", "Value": "RSS Subscriptions"},
        {"Name": "MarkAsRead", "Value": "True"},
        {"Name": "StopProcessingRules", "Value": "True"},
    ]
    display = owner.split("@")[0].replace(".", " ").title()
    return exchange_admin(ts, "New-InboxRule", owner, params, tenant=tenant, user_type=0,
                          client_ip=client_ip,
                          object_id=mbx_path(tenant, display) + "\\" + rule_name,
                          server="DB8PR05MB6032 (15.20.7362.019)")


def add_mailbox_permission(ts, actor, identity, user, *, tenant=CONTOSO):
    params = [
        {"Name": "Identity", "Value": identity},
        {"Name": "User", "Value": user},
        {"Name": "AccessRights", "Value": "FullAccess"},
        {"Name": "InheritanceType", "Value": "All"},
    ]
    return exchange_admin(ts, "Add-MailboxPermission", actor, params, tenant=tenant,
                          object_id=mbx_path(tenant, identity.split("@")[0]))


def get_bypass(ts, actor, identity, *, tenant=CONTOSO):
    """Get-...AuditBypassAssociation: similar name, does not contain the literal."""
    params = [{"Name": "Identity", "Value": identity}]
    return exchange_admin(ts, "Get-MailboxAuditBypassAssociation", actor, params, tenant=tenant,
                          object_id="")


def mail_items_accessed(ts, owner, ip, *, tenant=CONTOSO, folder="\\Inbox"):
    return {
        "CreationTime": ts,
        "Id": guid(),
        "Operation": "MailItemsAccessed",
        "OrganizationId": tenant[1],
        "RecordType": 50,
        "ResultStatus": "Succeeded",
        "UserKey": puid(),
        "UserType": 0,
        "Version": 1,
        "Workload": "Exchange",
        "ClientIPAddress": ip,
        "UserId": owner,
        "AppId": "00000002-0000-0ff1-ce00-000000000000",
        "ClientAppId": "",
        "ClientInfoString": "Client=OWA;Action=ViaProxy",
        "ExternalAccess": False,
        "InternalLogonType": 0,
        "LogonType": 0,
        "LogonUserSid": sid(),
        "MailboxGuid": guid(),
        "MailboxOwnerSid": sid(),
        "MailboxOwnerUPN": owner,
        "OperationProperties": [
            {"Name": "MailAccessType", "Value": "Bind"},
            {"Name": "IsThrottled", "Value": "False"},
        ],
        "OrganizationName": tenant[0],
        "OriginatingServer": "VI1PR05MB5566 (15.20.7362.019)\r\n",
        "SessionId": guid(),
        "Folders": [
            {
                "FolderItems": [{"InternetMessageId": "<%s@VI1PR05MB5566.eurprd05.prod.outlook.com>" % guid()[:18]}],
                "Id": "LgAAAAD" + hashlib.md5(ts.encode()).hexdigest().upper() + "AQ",
                "Path": folder,
            }
        ],
        "OperationCount": 1,
    }


def send_item(ts, owner, ip, subject, *, tenant=CONTOSO):
    """Mailbox audit 'Send' record (RecordType 2) that logs the subject."""
    return {
        "CreationTime": ts,
        "Id": guid(),
        "Operation": "Send",
        "OrganizationId": tenant[1],
        "RecordType": 2,
        "ResultStatus": "Succeeded",
        "UserKey": puid(),
        "UserType": 0,
        "Version": 1,
        "Workload": "Exchange",
        "ClientIP": ip,
        "UserId": owner,
        "AppId": "00000002-0000-0ff1-ce00-000000000000",
        "ClientAppId": "",
        "ClientIPAddress": ip,
        "ClientInfoString": "Client=OutlookService;Outlook/16.0",
        "ExternalAccess": False,
        "InternalLogonType": 0,
        "LogonType": 0,
        "LogonUserSid": sid(),
        "MailboxGuid": guid(),
        "MailboxOwnerSid": sid(),
        "MailboxOwnerUPN": owner,
        "OrganizationName": tenant[0],
        "OriginatingServer": "VI1PR05MB5566 (15.20.7362.019)\r\n",
        "SessionId": guid(),
        "Item": {
            "Id": "RgAAAAB" + hashlib.md5(subject.encode()).hexdigest().upper() + "AAAJ",
            "InternetMessageId": "<%s@VI1PR05MB5566.eurprd05.prod.outlook.com>" % guid()[:18],
            "ParentFolder": {"Id": "LgAAAADsentitems", "Path": "\\Sent Items"},
            "SizeInBytes": 10342,
            "Subject": subject,
        },
    }


def file_accessed(ts, user, ip, site, filename, *, tenant=CONTOSO, long_agent=False):
    agent = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/122.0.0.0 Safari/537.36 Edg/122.0.2365.66")
    if long_agent:
        agent = agent + " " + " ".join("OneDriveSync/%d.%03d.0101.0001" % (24, i) for i in range(25))
    url = "https://%s.sharepoint.com/sites/%s/Shared Documents/%s" % (
        tenant[0].split(".")[0], site, filename)
    return {
        "CreationTime": ts,
        "Id": guid(),
        "Operation": "FileAccessed",
        "OrganizationId": tenant[1],
        "RecordType": 6,
        "UserKey": "i:0h.f|membership|%s@live.com" % puid().lower(),
        "UserType": 0,
        "Version": 1,
        "Workload": "SharePoint",
        "ClientIP": ip,
        "ObjectId": url,
        "UserId": user,
        "CorrelationId": guid(),
        "EventSource": "SharePoint",
        "ItemType": "File",
        "ListId": guid(),
        "ListItemUniqueId": guid(),
        "Site": guid(),
        "UserAgent": agent,
        "WebId": guid(),
        "HighPriorityMediaProcessing": False,
        "SourceFileExtension": filename.rsplit(".", 1)[-1],
        "SiteUrl": "https://%s.sharepoint.com/sites/%s/" % (tenant[0].split(".")[0], site),
        "SourceFileName": filename,
        "SourceRelativeUrl": "Shared Documents",
    }


def user_logged_in(ts, user, ip, *, tenant=CONTOSO, status="Success", operation="UserLoggedIn"):
    user_guid = guid()
    return {
        "CreationTime": ts,
        "Id": guid(),
        "Operation": operation,
        "OrganizationId": tenant[1],
        "RecordType": 15,
        "ResultStatus": status,
        "UserKey": user_guid,
        "UserType": 0,
        "Version": 1,
        "Workload": "AzureActiveDirectory",
        "ClientIP": ip,
        "ObjectId": "00000002-0000-0ff1-ce00-000000000000",
        "UserId": user,
        "AzureActiveDirectoryEventType": 1,
        "ExtendedProperties": [
            {"Name": "ResultStatusDetail", "Value": "Redirect"},
            {"Name": "UserAgent", "Value": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Safari/605.1.15"},
            {"Name": "RequestType", "Value": "OAuth2:Authorize"},
        ],
        "ModifiedProperties": [],
        "Actor": [{"ID": user_guid, "Type": 0}, {"ID": user, "Type": 5}],
        "ActorContextId": tenant[1],
        "ActorIpAddress": ip,
        "InterSystemsId": guid(),
        "IntraSystemId": guid(),
        "SupportTicketId": "",
        "Target": [{"ID": "00000002-0000-0ff1-ce00-000000000000", "Type": 0}],
        "TargetContextId": tenant[1],
        "ApplicationId": "00000002-0000-0ff1-ce00-000000000000",
        "ErrorNumber": "0",
    }


# ----------------------------------------------------------------- ECS documents

ECS_OUTCOME = {"succeeded": "success", "success": "success", "partiallysucceeded": "success",
               "true": "success", "failed": "failure", "false": "failure"}


def _ecs_ip(raw):
    for k in ("ClientIPAddress", "ClientIP", "ActorIpAddress"):
        if k in raw:
            return raw[k]
    return None


def ecs_nested(raw, *, original=False, set_=None, unset=()):
    """Nested ECS doc shaped like the Elastic Agent o365 integration output.

    Built from a raw record for convenience; the evaluator never looks at the
    raw record, only at the written document.
    """
    audit = {k: v for k, v in raw.items() if k != "Parameters"}
    params = {}
    for p in raw.get("Parameters", []):
        params[p["Name"]] = p["Value"]
    if params:
        audit["Parameters"] = params
    status = raw.get("ResultStatus")
    outcome = ECS_OUTCOME.get(str(status).lower(), "success")
    ts = raw["CreationTime"] + ".000Z"
    ip = _ecs_ip(raw)
    event = {
        "action": raw["Operation"],
        "category": ["web"] if raw["RecordType"] == 1 else ["file"] if raw["RecordType"] == 6 else ["authentication"],
        "code": {1: "ExchangeAdmin", 6: "SharePointFileOperation", 15: "AzureActiveDirectoryStsLogon",
                 50: "ExchangeItemAggregated"}.get(raw["RecordType"], "ExchangeItem"),
        "dataset": "o365.audit",
        "id": raw["Id"],
        "ingested": ts.replace(".000Z", ".512Z"),
        "kind": "event",
        "module": "o365",
        "outcome": outcome,
        "provider": raw["Workload"],
        "type": ["info"],
    }
    if original:
        event["original"] = json.dumps(raw, separators=(",", ":"))
    doc = {
        "@timestamp": ts,
        "agent": {"id": "5b1f7c9e-0a3d-4e6b-8f2a-9c1d3e5f7a0b", "name": "siem-collector-01",
                  "type": "filebeat", "version": "8.13.4"},
        "data_stream": {"dataset": "o365.audit", "namespace": "default", "type": "logs"},
        "ecs": {"version": "8.11.0"},
        "event": event,
        "host": {"id": raw["OrganizationId"], "name": raw.get("OrganizationName", "")},
        "input": {"type": "cel"},
        "o365": {"audit": audit},
        "organization": {"id": raw["OrganizationId"]},
        "related": {"user": [raw["UserId"].split("@")[0]]},
        "tags": ["forwarded", "o365-audit"],
        "user": {"id": raw["UserId"]},
    }
    if "@" in raw["UserId"]:
        doc["user"]["name"], doc["user"]["domain"] = raw["UserId"].split("@", 1)
    if ip:
        doc["client"] = {"address": ip, "ip": ip}
        doc["source"] = {"ip": ip}
        doc["related"]["ip"] = [ip]
    if "OriginatingServer" in raw:
        doc["server"] = {"address": raw["OriginatingServer"].strip()}
    for path, value in (set_ or {}).items():
        _set_path(doc, path, value)
    for path in unset:
        _del_path(doc, path)
    return doc


def _set_path(doc, path, value):
    parts = path.split(".")
    for p in parts[:-1]:
        doc = doc.setdefault(p, {})
    doc[parts[-1]] = value


def _del_path(doc, path):
    parts = path.split(".")
    for p in parts[:-1]:
        doc = doc[p]
    del doc[parts[-1]]


def flatten(doc, prefix=""):
    """Filebeat-style flat doc: every nested object becomes dotted keys."""
    out = {}
    for k, v in doc.items():
        key = prefix + k
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def ecs_dotted(raw, **kw):
    return dict(sorted(flatten(ecs_nested(raw, **kw)).items()))


def es_hit(source, index=".ds-logs-o365.audit-default-2024.03.05-000001"):
    return {"_index": index, "_id": hashlib.md5(json.dumps(source, sort_keys=True).encode()).hexdigest()[:20],
            "_score": 1.0, "_source": source}


# ------------------------------------------------------------------ line model


def enc(obj, ascii_only=False):
    return json.dumps(obj, ensure_ascii=ascii_only, separators=(",", ":")).encode("utf-8")


class L:
    """One line of a fixture plus what it is meant to be."""

    def __init__(self, content, tag, expect=None, note=None):
        assert tag in ("blank", "noncand", "nomatch", "malformed", "match"), tag
        self.content = content if isinstance(content, bytes) else enc(content)
        self.tag = tag
        self.expect = expect  # (actor, target, bypass) for matches
        self.note = note


def M(r, actor, target, flag, ascii_only=False, note=None):
    """A line that must match, with the actor, target and flag it must give."""
    return L(enc(r, ascii_only), "match", (actor, target, flag), note)


def N(r, note=None):
    """A candidate (contains the literal) that must not match."""
    return L(r, "nomatch", note=note)


def X(r, note=None):
    """Not a candidate: no literal in the line."""
    return L(r, "noncand", note=note)


class Fixture:
    def __init__(self, path, lines, *, covers, eol=b"\n", bom=False, final_newline=True,
                 gzip_members=None, gzip=False, truncate=None):
        self.path = path
        self.lines = lines
        self.covers = covers
        self.eol = eol
        self.bom = bom
        self.final_newline = final_newline
        self.gzip = gzip or gzip_members is not None
        self.gzip_members = gzip_members  # list of byte offsets where a new member starts
        self.truncate = truncate  # None | ("trailer", n) | ("mid", line_index)

    def plain_bytes(self):
        body = self.eol.join(l.content for l in self.lines)
        if self.lines and self.final_newline:
            body += self.eol
        if self.bom:
            body = b"\xef\xbb\xbf" + body
        return body

    def file_bytes(self):
        data = self.plain_bytes()
        if not self.gzip:
            return data
        cuts = [0] + list(self.gzip_members or []) + [len(data)]
        out = b""
        for a, b in zip(cuts, cuts[1:]):
            out += gzip.compress(data[a:b], compresslevel=9, mtime=0)
        return out


# ------------------------------------------------------------------- fixtures


def noise_block(day, tenant=CONTOSO, n=0, start=0):
    """Typical non-matching traffic: mostly mailbox and SharePoint, some sign-ins."""
    t = lambda hh, mm, ss: "2024-03-%02dT%02d:%02d:%02d" % (day, hh, mm, ss)
    users = ["alex.wilber", "megan.bowen", "diego.siciliani", "lynne.robbins"]
    out = []
    for i in range(start, start + n):
        u = users[i % len(users)] + "@" + tenant[0]
        kind = i % 5
        if kind == 0:
            out.append(X(mail_items_accessed(t(8 + i % 10, (7 * i) % 60, (13 * i) % 60), u,
                                                    "198.51.100.%d" % (10 + i), tenant=tenant)))
        elif kind == 1:
            out.append(X(file_accessed(t(8 + i % 10, (11 * i) % 60, (17 * i) % 60), u,
                                       "203.0.113.%d" % (100 + i), "Finance",
                                       "Q%d-forecast.xlsx" % (1 + i % 4), tenant=tenant)))
        elif kind == 2:
            out.append(X(user_logged_in(t(7 + i % 10, (3 * i) % 60, (19 * i) % 60), u,
                                        "2001:db8:%x::%x" % (0x100 + i, 0x20 + i), tenant=tenant)))
        elif kind == 3:
            out.append(X(set_mailbox(t(9 + i % 8, (5 * i) % 60, (23 * i) % 60),
                                     "megan.bowen@" + tenant[0], u, tenant=tenant)))
        else:
            out.append(X(new_inbox_rule(t(10 + i % 8, (29 * i) % 60, (31 * i) % 60), u,
                                        "Archive newsletters %d" % i, tenant=tenant)))
    return out


def build():
    C = CONTOSO[0]
    F = FABRIKAM[0]
    megan = "megan.bowen@" + C
    adele = "adele.vance@" + C
    jdoe = "adm-jdoe@" + F
    fx = []

    # 1. raw UAL JSON lines: bypass events from three actors, True and False.
    lines = noise_block(5, n=3)
    lines.append(M(bypass("2024-03-05T10:11:12", megan, "svc-archiver@" + C, "True",
                          client_ip="203.0.113.25"), megan, "svc-archiver@" + C, True))
    lines += noise_block(5, n=3, start=3)
    lines.append(M(bypass("2024-03-05T11:02:40", SYSTEM, "journal-sink@" + C, "True",
                          client_ip=None, server="AM6PR05MB4321 (15.20.7362.019)"),
                   SYSTEM, "journal-sink@" + C, True))
    lines.append(X(add_mailbox_permission("2024-03-05T11:05:03", megan, "ceo@" + C, "svc-archiver@" + C)))
    lines += noise_block(6, n=5)
    lines.append(M(bypass("2024-03-06T09:30:00", jdoe, "shared.finance@" + F, "False", tenant=FABRIKAM,
                          client_ip="198.51.100.14:50611"), jdoe, "shared.finance@" + F, False))
    lines.append(M(bypass("2024-03-06T09:31:15", jdoe, "ceo@" + F, "True", tenant=FABRIKAM,
                          client_ip="[2001:db8:aa::14]:443"), jdoe, "ceo@" + F, True))
    lines += noise_block(6, n=2, start=5)
    lines.append(M(bypass("2024-03-07T16:45:09", megan, "svc-archiver@" + C, "False",
                          client_ip="203.0.113.25:49877"), megan, "svc-archiver@" + C, False))
    lines.append(M(bypass("2024-03-07T23:59:59", SYSTEM, "DiscoverySearchMailbox{D919BA05-46A6-415f-80AD-7E09334BB852}@" + C,
                          "True", client_ip="[2001:db8:4::23]"),
                   SYSTEM, "DiscoverySearchMailbox{D919BA05-46A6-415f-80AD-7E09334BB852}@" + C, True))
    lines += noise_block(7, n=3)
    fx.append(Fixture("raw_ual_bypass_events.jsonl", lines,
                      covers="raw UAL JSONL, bypass events by 3 actors (incl. NT AUTHORITY\\SYSTEM), "
                             "True and False flags, ip:port / [ip]:port / [ip] / absent client IP, "
                             "mixed with Set-Mailbox, New-InboxRule, MailItemsAccessed, FileAccessed, UserLoggedIn"))

    # 1b. raw field-mapping edge cases.
    lines = [X(user_logged_in("2024-03-08T08:00:00", adele, "192.0.2.10"))]
    # Identity absent -> target falls back to ObjectId; flag lowercase "true".
    r = exchange_admin("2024-03-08T08:10:00", OP, adele,
                       [{"Name": "AuditBypassEnabled", "Value": "true"}],
                       object_id=mbx_path(CONTOSO, "svc-crm-sync"), client_ip="192.0.2.10")
    lines.append(M(r, adele, mbx_path(CONTOSO, "svc-crm-sync"), True,
                   note="no Identity parameter: target is ObjectId; flag \"true\" (lower case)"))
    # Identity null (skipped) -> ObjectId; flag "FALSE".
    r = exchange_admin("2024-03-08T08:11:00", OP, adele,
                       [{"Name": "Identity", "Value": None}, {"Name": "AuditBypassEnabled", "Value": "FALSE"}],
                       object_id=mbx_path(CONTOSO, "svc-crm-sync"), client_ip="192.0.2.10")
    lines.append(M(r, adele, mbx_path(CONTOSO, "svc-crm-sync"), False,
                   note="Identity value null (skipped): target is ObjectId; flag \"FALSE\""))
    # Duplicate Identity: the later one wins.
    r = exchange_admin("2024-03-08T08:12:00", OP, adele,
                       [{"Name": "Identity", "Value": "old-name@" + C},
                        {"Name": "AuditBypassEnabled", "Value": "True"},
                        {"Name": "Identity", "Value": "svc-scanner@" + C}],
                       object_id=mbx_path(CONTOSO, "svc-scanner"), client_ip="192.0.2.10")
    lines.append(M(r, adele, "svc-scanner@" + C, True, note="two Identity entries: the later one wins"))
    # No AuditBypassEnabled parameter at all -> flag unknown (null).
    r = exchange_admin("2024-03-08T08:13:00", OP, adele,
                       [{"Name": "Identity", "Value": "svc-scanner@" + C}],
                       object_id=mbx_path(CONTOSO, "svc-scanner"), client_ip="192.0.2.10")
    lines.append(M(r, adele, "svc-scanner@" + C, None, note="no AuditBypassEnabled parameter: flag null"))
    # Parameters as a string -> Parameters._raw; no Identity -> ObjectId; flag null.
    r = exchange_admin("2024-03-08T08:14:00", OP, adele,
                       "-Identity \"svc-legacy@%s\" -AuditBypassEnabled $true" % C,
                       object_id=mbx_path(CONTOSO, "svc-legacy"), client_ip="192.0.2.10")
    lines.append(M(r, adele, mbx_path(CONTOSO, "svc-legacy"), None,
                   note="Parameters is a string (-> Parameters._raw): target is ObjectId, flag null"))
    # Source IP precedence and forms.
    r = bypass("2024-03-08T09:00:00", adele, "svc-ip-1@" + C, client_ip="198.51.100.99",
               extra={"ClientIPAddress": "203.0.113.10"})
    lines.append(M(r, adele, "svc-ip-1@" + C, True, note="ClientIPAddress 203.0.113.10 wins over ClientIP"))
    r = bypass("2024-03-08T09:01:00", adele, "svc-ip-2@" + C, client_ip="::ffff:198.51.100.23")
    lines.append(M(r, adele, "svc-ip-2@" + C, True, note="ClientIP ::ffff:198.51.100.23 -> 198.51.100.23"))
    r = bypass("2024-03-08T09:02:00", adele, "svc-ip-3@" + C, client_ip=None,
               extra={"ActorIpAddress": "2001:db8::51"})
    lines.append(M(r, adele, "svc-ip-3@" + C, True, note="only ActorIpAddress is present"))
    r = bypass("2024-03-08T09:03:00", adele, "svc-ip-4@" + C, client_ip="EXHYB01.corp.contoso.example")
    lines.append(M(r, adele, "svc-ip-4@" + C, True, note="ClientIP is a host name: source ip null"))
    r = bypass("2024-03-08T09:04:00", adele, "svc-ip-5@" + C, client_ip="2001:db8:cafe::17")
    lines.append(M(r, adele, "svc-ip-5@" + C, True, note="plain IPv6 ClientIP"))
    # Non-ASCII target, once raw UTF-8 and once as \u escapes in the JSON text.
    r = bypass("2024-03-08T09:05:00", jdoe, "björn.müller@" + F, "True", tenant=FABRIKAM,
               alias="bjorn.muller", client_ip="198.51.100.14")
    lines.append(M(r, jdoe, "björn.müller@" + F, True, note="non-ASCII target as raw UTF-8"))
    r = bypass("2024-03-08T09:06:00", jdoe, "zoë.ångström@" + F, "False", tenant=FABRIKAM,
               alias="zoe.angstrom", client_ip="198.51.100.14")
    lines.append(M(r, jdoe, "zoë.ångström@" + F, False, ascii_only=True,
                   note="non-ASCII target written as \\u escapes in the JSON text"))
    lines.append(X(file_accessed("2024-03-08T09:30:00", adele, "192.0.2.10", "IT", "runbook.docx")))
    fx.append(Fixture("raw_field_mapping_edge_cases.jsonl", lines,
                      covers="raw mapping edge cases: target fallback to ObjectId (no Identity, null Identity, "
                             "string Parameters), duplicate Identity (later wins), flag absent / lower / upper case, "
                             "source ip precedence and forms, non-ASCII and \\u-escaped targets"))

    # 2. ECS documents.
    lines = []
    r = bypass("2024-03-05T10:20:00", megan, "svc-backup@" + C, "True", client_ip="203.0.113.25")
    lines.append(M(ecs_nested(r, original=True), megan, "svc-backup@" + C, True))
    lines.append(X(ecs_nested(set_mailbox("2024-03-05T10:21:00", megan, "svc-backup@" + C))))
    lines.append(X(ecs_nested(user_logged_in("2024-03-05T10:22:00", adele, "198.51.100.61"))))
    r = bypass("2024-03-05T10:30:00", SYSTEM, "journal-sink@" + C, "False", client_ip=None)
    lines.append(M(ecs_nested(r, unset=("event.dataset", "data_stream")), SYSTEM, "journal-sink@" + C, False))
    r = exchange_admin("2024-03-05T10:40:00", OP, adele, [{"Name": "AuditBypassEnabled", "Value": "True"}],
                       object_id=mbx_path(CONTOSO, "svc-dlp"), client_ip="2001:db8:10::5")
    lines.append(M(ecs_nested(r, unset=("event.dataset",), set_={"@timestamp": "2024-03-05T11:40:00+01:00"}),
                   adele, mbx_path(CONTOSO, "svc-dlp"), True))
    r = bypass("2024-03-05T10:50:00", adele, "svc-dlp@" + C, "True", status="Failed", client_ip="2001:db8:10::5")
    lines.append(N(ecs_nested(r)))
    lines.append(X(ecs_nested(mail_items_accessed("2024-03-05T10:55:00", megan, "203.0.113.25"))))
    fx.append(Fixture("ecs_nested_agent.ndjson", lines,
                      covers="ECS nested (Elastic Agent style, o365.audit.Parameters object): match with "
                             "event.original, match with no dataset at all, match with only "
                             "data_stream.dataset + ObjectId target + @timestamp offset +01:00, failure outcome"))

    lines = []
    r = bypass("2024-03-06T14:00:00", jdoe, "ceo@" + F, "True", tenant=FABRIKAM, client_ip="198.51.100.14")
    lines.append(M(ecs_dotted(r), jdoe, "ceo@" + F, True))
    lines.append(X(ecs_dotted(new_inbox_rule("2024-03-06T14:05:00", "lee.gu@" + F, "Move invoices",
                                             tenant=FABRIKAM))))
    r = bypass("2024-03-06T14:10:00", SYSTEM, "audit-exempt@" + F, "true", tenant=FABRIKAM, client_ip=None)
    lines.append(M(ecs_dotted(r), SYSTEM, "audit-exempt@" + F, True))
    lines.append(X(ecs_dotted(file_accessed("2024-03-06T14:15:00", "lee.gu@" + F, "203.0.113.140", "HR",
                                            "salaries.xlsx", tenant=FABRIKAM))))
    fx.append(Fixture("ecs_dotted_filebeat.ndjson", lines,
                      covers="ECS flat dotted keys (Filebeat module style, \"event.action\", "
                             "\"o365.audit.Parameters.Identity\")"))

    lines = []
    r = bypass("2024-03-06T15:00:00", megan, "svc-ediscovery@" + C, "True", client_ip="203.0.113.26")
    d = ecs_nested(r)
    d["user.id"] = d.pop("user")["id"]
    d["o365.audit.Parameters"] = d["o365"]["audit"].pop("Parameters")
    lines.append(M(d, megan, "svc-ediscovery@" + C, True))
    r = bypass("2024-03-06T15:05:00", megan, "svc-ediscovery@" + C, "False", client_ip="203.0.113.26")
    d = ecs_nested(r)
    ev = d.pop("event")
    for k in ("action", "dataset", "provider", "outcome", "id"):
        d["event." + k] = ev[k]
    params = d["o365"]["audit"].pop("Parameters")
    d["o365"]["audit.Parameters.Identity"] = params["Identity"]
    d["o365"]["audit.Parameters.AuditBypassEnabled"] = params["AuditBypassEnabled"]
    lines.append(M(d, megan, "svc-ediscovery@" + C, False))
    r = bypass("2024-03-06T15:10:00", adele, "svc-ediscovery@" + C, "True", client_ip="192.0.2.44")
    d = ecs_nested(r)
    ev = d["event"]
    d["event.action"] = ev.pop("action")
    d["event.outcome"] = ev.pop("outcome")
    lines.append(M(d, adele, "svc-ediscovery@" + C, True))
    d = ecs_nested(set_mailbox("2024-03-06T15:15:00", adele, "svc-ediscovery@" + C))
    d["event.action"] = d["event"].pop("action")
    lines.append(X(d))
    fx.append(Fixture("ecs_mixed_nested_dotted.ndjson", lines,
                      covers="ECS docs mixing nested and dotted keys: dotted user.id + dotted "
                             "o365.audit.Parameters object; all-dotted event.* + o365{\"audit.Parameters.X\"}; "
                             "event object and event.* keys in the same doc"))

    lines = []
    r = bypass("2024-03-07T08:00:00", megan, "svc-archiver@" + C, "True", client_ip="203.0.113.25")
    lines.append(M(es_hit(ecs_nested(r)), megan, "svc-archiver@" + C, True))
    r = bypass("2024-03-07T08:05:00", jdoe, "shared.finance@" + F, "True", tenant=FABRIKAM,
               client_ip="198.51.100.14")
    lines.append(M(es_hit(ecs_dotted(r), index="filebeat-8.13.4-2024.03.07-000004"), jdoe,
                   "shared.finance@" + F, True))
    r = bypass("2024-03-07T08:10:00", SYSTEM, "journal-sink@" + C, "False", client_ip=None)
    lines.append(M(es_hit(r, index="ual-raw-2024.03"), SYSTEM, "journal-sink@" + C, False))
    lines.append(X(es_hit(ecs_nested(user_logged_in("2024-03-07T08:15:00", megan, "203.0.113.25")))))
    r = bypass("2024-03-07T08:20:00", megan, "svc-archiver@" + C, "True", client_ip="203.0.113.25")
    lines.append(N(es_hit(ecs_nested(r, set_={"event.dataset": "azure.auditlogs",
                                              "data_stream.dataset": "azure.auditlogs"}),
                          index=".ds-logs-azure.auditlogs-default-2024.03.07-000001")))
    r = bypass("2024-03-07T08:25:00", megan, "svc-archiver@" + C, "True", status="Failed", client_ip="203.0.113.25")
    lines.append(N(es_hit(ecs_nested(r))))
    fx.append(Fixture("es_hits_source.ndjson", lines,
                      covers="Elasticsearch dump lines {_index,_id,_score,_source}: _source nested ECS, "
                             "dotted ECS and raw UAL match; azure.auditlogs and failure decoys"))

    # 3. Every ResultStatus spelling, one bypass record each, each with its own actor.
    spellings = [  # (label, value or MISSING, actor local part)
        ("Succeeded", "Succeeded", "alex.wilber"),
        ("success", "success", "diego.siciliani"),
        ("Success", "Success", "grady.archie"),
        ("PartiallySucceeded", "PartiallySucceeded", "isaiah.langer"),
        ("True", "True", "johanna.lorenz"),
        ("TRUE", "TRUE", "lee.gu"),
        ("Failed", "Failed", "lidia.holloway"),
        ("False", "False", "lynne.robbins"),
        ("FAILED", "FAILED", "miriam.graham"),
        ("absent", None, "nestor.wilke"),
        ("Unknown", "Unknown", "patti.fernandez"),
        ("empty string", "", "pradeep.gupta"),
        ("null", "NULL", "christie.cline"),
    ]
    lines = noise_block(9, n=2)
    for i, (label, value, who) in enumerate(spellings):
        actor = who + "@" + C
        target = "rs-%02d-%s@%s" % (i + 1, label.lower().replace(" ", "-"), C)
        ts = "2024-03-09T12:%02d:00" % i
        if value is None:
            r = bypass(ts, actor, target, "True", client_ip="198.51.100.%d" % (200 + i), drop=("ResultStatus",))
        elif value == "NULL":
            r = bypass(ts, actor, target, "True", client_ip="198.51.100.%d" % (200 + i), status=None)
        else:
            r = bypass(ts, actor, target, "True", client_ip="198.51.100.%d" % (200 + i), status=value)
        if value is not None and value != "NULL" and value.lower() in ("failed", "false"):
            lines.append(N(r, note="ResultStatus %s -> failure" % label))
        else:
            lines.append(M(r, actor, target, True, note="ResultStatus %s -> success" % label))
    lines += noise_block(9, n=3, start=2)
    fx.append(Fixture("result_status_spellings.jsonl", lines,
                      covers="one bypass record per ResultStatus spelling (Succeeded, success, Success, "
                             "PartiallySucceeded, True, TRUE, Failed, False, FAILED, absent, Unknown, \"\", null), "
                             "one actor and one target (rs-<nn>-<spelling>@contoso) per spelling"))

    # 4. Decoys: candidates or near-candidates that must not match. No match in this file.
    lines = []
    lines.append(N(set_mailbox("2024-03-10T09:00:00", megan, "alex.wilber@" + C,
                               [{"Name": "CustomAttribute10", "Value": "CHG0042: " + OP + " approved for svc-archiver"}]),
                   note="raw Set-Mailbox; the literal is inside a Parameters value"))
    lines.append(N(new_inbox_rule("2024-03-10T09:01:00", "alex.wilber@" + C, OP + " alerts"),
                   note="raw New-InboxRule; the literal is in the rule name (Parameters Name and ObjectId)"))
    lines.append(N(send_item("2024-03-10T09:02:00", megan, "203.0.113.25",
                             "RE: why did " + OP + " run on svc-archiver?"),
                   note="raw mailbox-audit Send; the literal is in Item.Subject"))
    r = bypass("2024-03-10T09:03:00", megan, "svc-archiver@" + C, workload="AzureActiveDirectory")
    lines.append(N(r, note="raw bypass operation with Workload AzureActiveDirectory (provider mismatch)"))
    lines.append(N(bypass("2024-03-10T09:04:00", megan, "svc-archiver@" + C, status="Failed"),
                   note="raw bypass with ResultStatus Failed (outcome failure)"))
    lines.append(X(exchange_admin("2024-03-10T09:05:00", OP.lower(), megan,
                                  [{"Name": "Identity", "Value": "svc-archiver@" + C},
                                   {"Name": "AuditBypassEnabled", "Value": "True"}],
                                  object_id=mbx_path(CONTOSO, "svc-archiver")),
                   note="raw record whose Operation is the literal in all lower case: not a candidate for an "
                        "exact prefilter; a case-insensitive prefilter may make it a not_matched candidate"))
    lines.append(N(bypass("2024-03-10T09:06:00", megan, "svc-archiver@" + C, workload="exchange"),
                   note="raw bypass with Workload \"exchange\" (lower case; KQL is case-sensitive)"))
    r = bypass("2024-03-10T09:07:00", megan, "svc-archiver@" + C)
    r["Operation"] = OP + " "
    lines.append(N(r, note="raw bypass whose Operation has a trailing space"))
    lines.append(X(get_bypass("2024-03-10T09:08:00", megan, "svc-archiver@" + C),
                   note="raw Get-MailboxAuditBypassAssociation (similar name, not a candidate)"))
    r = bypass("2024-03-10T09:09:00", megan, "svc-archiver@" + C)
    lines.append(N(ecs_nested(r, set_={"event.dataset": "azure.auditlogs", "data_stream.dataset": "azure.auditlogs"}),
                   note="ECS nested, event.dataset and data_stream.dataset azure.auditlogs"))
    r = bypass("2024-03-10T09:10:00", megan, "svc-archiver@" + C)
    lines.append(N(ecs_nested(r, set_={"data_stream.dataset": "azure.auditlogs"}, unset=("event.dataset",)),
                   note="ECS nested, no event.dataset, data_stream.dataset azure.auditlogs"))
    r = bypass("2024-03-10T09:11:00", megan, "svc-archiver@" + C, workload="AzureActiveDirectory")
    lines.append(N(ecs_dotted(r), note="ECS dotted, event.provider AzureActiveDirectory"))
    r = bypass("2024-03-10T09:12:00", megan, "svc-archiver@" + C, status="False")
    lines.append(N(ecs_nested(r), note="ECS nested, event.outcome failure"))
    r = bypass("2024-03-10T09:13:00", megan, "svc-archiver@" + C)
    lines.append(N(ecs_nested(r, unset=("event.outcome",)),
                   note="ECS nested without event.outcome (KQL needs the field; the raw default does not apply)"))
    r = bypass("2024-03-10T09:14:00", megan, "svc-archiver@" + C)
    lines.append(N(ecs_nested(r, set_={"event.action": "Set-Mailbox"}, original=True),
                   note="ECS nested with event.action Set-Mailbox; the literal is left in o365.audit.Operation and "
                        "event.original, which the rule does not read"))
    fx.append(Fixture("decoys_no_match.jsonl", lines,
                      covers="decoys, 0 matches (exit 1 alone): the literal in a Parameters value, an inbox-rule "
                             "name, a mail subject; Workload AzureActiveDirectory / lower-case exchange; failed; "
                             "lower-case operation; trailing space; Get- cmdlet; ECS azure.auditlogs "
                             "(event.dataset, or data_stream.dataset only), ECS provider AzureActiveDirectory, "
                             "ECS outcome failure, ECS without event.outcome, ECS whose event.action is Set-Mailbox but "
                             "o365.audit.Operation / event.original hold the literal"))

    # 5. gzip.
    lines = noise_block(11, n=3)
    lines.append(M(bypass("2024-03-11T07:00:00", megan, "svc-gz-1@" + C, client_ip="203.0.113.25"),
                   megan, "svc-gz-1@" + C, True))
    lines += noise_block(11, n=3, start=3)
    lines.append(M(bypass("2024-03-11T07:30:00", jdoe, "svc-gz-2@" + F, "False", tenant=FABRIKAM,
                          client_ip="198.51.100.14"), jdoe, "svc-gz-2@" + F, False))
    lines += noise_block(12, n=3)
    lines.append(M(bypass("2024-03-12T07:00:00", SYSTEM, "svc-gz-3@" + C, client_ip=None),
                   SYSTEM, "svc-gz-3@" + C, True))
    f = Fixture("gzip_multi_member.jsonl.gz", lines, gzip=True,
                covers="gzip with 4 members (one empty) concatenated at line boundaries")
    f.member_lines = [4, 8, 8]  # members start before these line indexes (0-based); 8 twice = empty member
    fx.append(f)

    lines = noise_block(13, n=2)
    lines.append(M(bypass("2024-03-13T07:00:00", megan, "svc-gz-4@" + C, client_ip="203.0.113.25"),
                   megan, "svc-gz-4@" + C, True))
    lines += noise_block(13, n=2, start=2)
    lines.append(M(bypass("2024-03-13T07:10:00", megan, "svc-gz-5@" + C, client_ip="203.0.113.25"),
                   megan, "svc-gz-5@" + C, True))
    f = Fixture("gzip_multi_member_split_midline.jsonl.gz", lines, gzip=True,
                covers="gzip with 2 members where the member boundary cuts a matching line (inside the literal)")
    f.split_inside_literal = 2  # index of the line whose literal is cut by the member boundary
    fx.append(f)

    lines = [X(mail_items_accessed("2024-03-14T06:00:00", megan, "203.0.113.25")),
             M(bypass("2024-03-14T06:05:00", megan, "svc-gz-6@" + C, client_ip="203.0.113.25"),
               megan, "svc-gz-6@" + C, True),
             X(user_logged_in("2024-03-14T06:10:00", megan, "203.0.113.25"))]
    fx.append(Fixture("gzip_content_named.json", lines, gzip=True,
                      covers="gzip bytes in a file named .json (compression from magic, not name)"))
    lines = [X(file_accessed("2024-03-14T07:00:00", megan, "203.0.113.25", "Legal", "nda.pdf")),
             M(bypass("2024-03-14T07:05:00", megan, "svc-gz-7@" + C, "False", client_ip="203.0.113.25"),
               megan, "svc-gz-7@" + C, False)]
    fx.append(Fixture("plain_content_named.jsonl.gz", lines,
                      covers="plain JSON lines in a file named .gz"))

    # 5b. Truncated gzip (bad/): must end in exit code 2.
    lines = noise_block(15, n=6)
    lines.insert(2, M(bypass("2024-03-15T06:00:00", megan, "svc-trunc-1@" + C, client_ip="203.0.113.25"),
                      megan, "svc-trunc-1@" + C, True))
    lines.insert(4, M(bypass("2024-03-15T06:10:00", jdoe, "svc-trunc-2@" + F, tenant=FABRIKAM,
                             client_ip="198.51.100.14"), jdoe, "svc-trunc-2@" + F, True))
    # A long non-candidate line; the cut falls in the middle of it.
    lines.insert(7, X(file_accessed("2024-03-15T06:20:00", megan, "203.0.113.25", "Engineering",
                                    "design-review-%s.pptx" % ("x" * 40), long_agent=True)))
    lines.insert(9, M(bypass("2024-03-15T06:30:00", megan, "svc-trunc-3@" + C, client_ip="203.0.113.25"),
                      megan, "svc-trunc-3@" + C, True))
    lines += noise_block(16, n=6)
    f = Fixture("bad/gzip_truncated_midstream.jsonl.gz", lines, gzip=True, truncate=("mid", 7),
                covers="gzip cut in the middle of the deflate data (inside line 8, a long non-candidate line); "
                       "2 matches before the cut, 1 after; reading must end in exit code 2")
    fx.append(f)
    lines = [X(user_logged_in("2024-03-16T06:00:00", megan, "203.0.113.25")),
             M(bypass("2024-03-16T06:05:00", megan, "svc-trunc-4@" + C, client_ip="203.0.113.25"),
               megan, "svc-trunc-4@" + C, True),
             X(set_mailbox("2024-03-16T06:10:00", megan, "svc-trunc-4@" + C))]
    fx.append(Fixture("bad/gzip_truncated_trailer.jsonl.gz", lines, gzip=True, truncate=("trailer", 5),
                      covers="gzip whose deflate data is complete but the 8-byte CRC32/ISIZE trailer is cut "
                             "to 3 bytes: all lines decode, the stream still ends early; exit code 2"))

    # 6. CRLF + BOM + no final newline; matches on the first and the last line.
    lines = [M(bypass("2024-03-17T10:00:00", megan, "svc-crlf-first@" + C, client_ip="203.0.113.25"),
               megan, "svc-crlf-first@" + C, True)]
    lines += noise_block(17, n=3)
    lines.append(L(b"", "blank"))
    lines += noise_block(17, n=2, start=3)
    lines.append(M(bypass("2024-03-17T18:00:00", jdoe, "svc-crlf-last@" + F, "False", tenant=FABRIKAM,
                          client_ip="198.51.100.14"), jdoe, "svc-crlf-last@" + F, False))
    fx.append(Fixture("crlf_bom_no_final_newline.jsonl", lines, eol=b"\r\n", bom=True, final_newline=False,
                      covers="UTF-8 BOM, CRLF line ends, an empty CRLF line, no newline after the last line; "
                             "matches on line 1 (after the BOM) and on the last line"))

    # 7. Malformed lines between valid matches.
    good1 = bypass("2024-03-18T10:00:00", megan, "svc-mal-1@" + C, client_ip="203.0.113.25")
    good2 = bypass("2024-03-18T10:10:00", megan, "svc-mal-2@" + C, client_ip="203.0.113.25")
    good3 = bypass("2024-03-18T10:20:00", megan, "svc-mal-3@" + C, "False", client_ip="203.0.113.25")
    trunc = enc(bypass("2024-03-18T10:05:00", megan, "svc-mal-x@" + C, client_ip="203.0.113.25"))
    cut = trunc.index(OP_B) + len(OP_B) + 40
    trunc2 = enc(bypass("2024-03-18T10:06:00", megan, "svc-mal-y@" + C, client_ip="203.0.113.25"))
    cut2 = trunc2.index(b'"Operation"') - 3
    glued = enc(bypass("2024-03-18T10:12:00", megan, "svc-mal-glued@" + C, client_ip="203.0.113.25")) + \
        enc(set_mailbox("2024-03-18T10:12:01", megan, "svc-mal-glued@" + C))
    bad_utf8 = enc(bypass("2024-03-18T10:14:00", megan, "svc-mal-utf8@" + C, client_ip="203.0.113.25"))
    bad_utf8 = bad_utf8.replace(b"svc-mal-utf8", b"svc-mal-\xff\xfe-utf8")
    lines = [
        M(good1, megan, "svc-mal-1@" + C, True),
        X(set_mailbox("2024-03-18T10:01:00", megan, "alex.wilber@" + C)),
        L(b"", "blank"),
        L(trunc[:cut], "malformed", note="JSON record cut 40 bytes after the literal"),
        L(b"   ", "blank"),
        M(good2, megan, "svc-mal-2@" + C, True),
        L(b"2024-03-18 10:11:07Z WARN ual-export: throttled (HTTP 429) while fetching " + OP_B +
          b" records, retry in 30s", "malformed", note="collector log line (not JSON) with the literal"),
        L(b"\t", "blank"),
        L(trunc2[:cut2], "noncand", note="JSON record cut before Operation: no literal, so not a candidate and not malformed"),
        L(b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", "noncand",
          note="HTML garbage without the literal: not a candidate, not malformed"),
        L(glued, "malformed", note="a bypass record and a Set-Mailbox record glued on one line (lost newline)"),
        L(bad_utf8, "malformed", note="bypass record with invalid UTF-8 bytes (FF FE) inside the Identity string"),
        L(b" \t ", "blank"),
        L(b"", "blank"),
        L(b"{\"CreationTime\":\"2024-03-18T10:15:00\",\"Id\":\"" + guid().encode() + b"\",\"Operation\":\"" + OP_B +
          b"\",\"Workload\":\"Exchange\",\"UserId\":\"megan.bowen@" + C.encode() + b"\",\"Parameters\":[{\"Name\":"
          b"\"Identity\",\"Value\":\"svc-mal-z@" + C.encode() + b"\"}", "malformed",
          note="object and Parameters array never closed"),
        M(good3, megan, "svc-mal-3@" + C, False),
    ]
    fx.append(Fixture("malformed_lines.jsonl", lines,
                      covers="malformed candidates (truncated JSON with the literal, a log line with the literal, "
                             "two records glued on one line, invalid UTF-8, unclosed object) between 3 valid "
                             "matches; blank and whitespace-only lines; non-candidate garbage (truncated "
                             "before the literal, HTML) that is not counted as malformed"))

    # 8. One ~3 MB matching line between normal lines.
    piece = ("entry %05d: \"quoted\" C:\\Exchange\\Logs\\trace-%05d.log caf\u00e9 \u2013 ok\n")
    blob = "".join(piece % (i, i) for i in range(1, 40000))
    assert OP not in blob
    big = bypass("2024-03-19T10:00:00", SYSTEM, "svc-huge@" + C, "True", client_ip="[2001:db8:77::1]:8443")
    big_ordered = {"CreationTime": big.pop("CreationTime"), "Id": big.pop("Id"),
                   "ExtendedProperties": blob[: len(blob) // 2]}
    big_ordered.update(big)
    big_ordered["Parameters"].insert(1, {"Name": "Comment", "Value": blob[len(blob) // 2 :]})
    lines = noise_block(19, n=3)
    lines.append(M(bypass("2024-03-19T09:00:00", megan, "svc-before-huge@" + C, client_ip="203.0.113.25"),
                   megan, "svc-before-huge@" + C, True))
    lines.append(X(set_mailbox("2024-03-19T09:30:00", megan, "svc-huge@" + C)))
    lines.append(M(big_ordered, SYSTEM, "svc-huge@" + C, True))
    lines.append(X(user_logged_in("2024-03-19T10:30:00", megan, "203.0.113.25")))
    lines.append(M(bypass("2024-03-19T11:00:00", megan, "svc-after-huge@" + C, "False", client_ip="203.0.113.25"),
                   megan, "svc-after-huge@" + C, False))
    lines += noise_block(19, n=2, start=3)
    fx.append(Fixture("huge_line_3mb.jsonl", lines,
                      covers="a ~3 MB matching line (1.5 MB ExtendedProperties string before Operation, 1.5 MB "
                             "Parameters 'Comment' value before AuditBypassEnabled, with escapes and non-ASCII) "
                             "between normal lines and matches"))

    # 9. Directory tree, plain and gzip, matches out of time order across files.
    fx.append(Fixture("tree/2024-01.jsonl",
                      noise_block(1, n=2) + [M(bypass("2024-01-20T10:00:00", megan, "svc-tree-a@" + C,
                                                      client_ip="203.0.113.25"), megan, "svc-tree-a@" + C, True)],
                      covers="tree: top-level plain file"))
    fx.append(Fixture("tree/a/2024-02.jsonl.gz",
                      [M(bypass("2024-01-05T10:00:00", megan, "svc-tree-b@" + C, "False", client_ip="203.0.113.25"),
                         megan, "svc-tree-b@" + C, False)] + noise_block(2, n=2), gzip=True,
                      covers="tree: gzip one level down; its match is EARLIER in time than tree/2024-01.jsonl's"))
    fx.append(Fixture("tree/a/b/2024-03.jsonl",
                      noise_block(3, n=1) + [M(bypass("2024-03-02T10:00:00", jdoe, "svc-tree-c@" + F,
                                                      tenant=FABRIKAM, client_ip="198.51.100.14"),
                                               jdoe, "svc-tree-c@" + F, True)],
                      covers="tree: plain two levels down"))
    fx.append(Fixture("tree/a/b/c/2024-04.jsonl.gz",
                      [M(bypass("2024-04-01T00:00:00", jdoe, "svc-tree-c@" + F, "False", tenant=FABRIKAM,
                                client_ip="198.51.100.14"), jdoe, "svc-tree-c@" + F, False),
                       M(bypass("2024-04-01T00:00:01", megan, "svc-tree-a@" + C, "False", client_ip="203.0.113.25"),
                         megan, "svc-tree-a@" + C, False)] + noise_block(4, n=1), gzip=True,
                      covers="tree: gzip three levels down, two actors"))
    fx.append(Fixture("tree/a/b/c/d/e/2024-05.jsonl",
                      [M(bypass("2024-05-31T23:59:59", SYSTEM, "svc-tree-d@" + C, client_ip=None),
                         SYSTEM, "svc-tree-d@" + C, True)],
                      covers="tree: plain five levels down, single line"))
    fx.append(Fixture("tree/a/b/c/empty.jsonl", [], covers="tree: empty (0-byte) plain file"))
    fx.append(Fixture("tree/a/empty.jsonl.gz", [], gzip=True, covers="tree: gzip of empty content"))
    return fx


# --------------------------------------------------------------------- writing


def member_offsets(f):
    """Byte offsets at which a new gzip member starts."""
    if getattr(f, "member_lines", None):
        pos = 0
        idx_to_off = []
        for l in f.lines:
            idx_to_off.append(pos)
            pos += len(l.content) + len(f.eol)
        return [idx_to_off[i] for i in f.member_lines]
    if getattr(f, "split_inside_literal", None) is not None:
        pos = sum(len(l.content) + len(f.eol) for l in f.lines[: f.split_inside_literal])
        lit = f.lines[f.split_inside_literal].content.index(OP_B)
        off = pos + lit + 11  # between "Set-Mailbox" and the rest of the literal
        return [off]
    return None


def write_fixtures(fx):
    # Start from a clean slate: only this script survives. The guard keeps a
    # copy of the script elsewhere from emptying the wrong directory.
    if os.path.basename(HERE) != "testdata":
        raise SystemExit("make_fixtures.py must live in testdata/")
    for name in os.listdir(HERE):
        p = os.path.join(HERE, name)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif name != os.path.basename(__file__):
            os.remove(p)
    for f in fx:
        if f.gzip:
            f.gzip_members = member_offsets(f)
        data = f.file_bytes()
        if f.truncate:
            kind, arg = f.truncate
            if kind == "trailer":
                data = data[:-arg]
            else:
                data = data[: choose_mid_cut(f, data, arg)]
        path = os.path.join(HERE, f.path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(data)


def choose_mid_cut(f, data, line_index):
    """Smallest cut >= the middle of the gzip data whose decodable prefix ends
    inside line `line_index`, at least 100 bytes into it and 100 bytes before its end."""
    plain = f.plain_bytes()
    start = sum(len(l.content) + 1 for l in f.lines[:line_index])
    end = start + len(f.lines[line_index].content)
    for cut in range(len(data) // 3, len(data) - 8):
        got = inflate_prefix(data[:cut])[0]
        assert plain.startswith(got)
        if start + 100 <= len(got) <= end - 100:
            return cut
    raise SystemExit("no cut found for " + f.path)


# ------------------------------------------------------ independent evaluation


def inflate_prefix(data):
    """Decode as many gzip members as possible. Returns (bytes, error or None)."""
    out = b""
    rest = data
    while rest:
        d = zlib.decompressobj(wbits=31)
        try:
            out += d.decompress(rest)
        except zlib.error as e:
            return out, "gzip error: %s" % e
        if not d.eof:
            return out, "gzip stream ends early (after %d decompressed bytes)" % len(out)
        rest = d.unused_data
    return out, None


def read_decoded(path):
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        data, err = inflate_prefix(raw)
        return raw, data, True, err
    return raw, raw, False, None


def split_lines(data):
    """1-based lines; a last line without newline counts; no phantom line after a final newline."""
    if not data:
        return []
    parts = data.split(b"\n")
    if data.endswith(b"\n"):
        parts.pop()
    return parts


def lookup(doc, dotted):
    """ECS field lookup: every way of splitting the dotted path into keys, as Elasticsearch does."""
    parts = dotted.split(".")
    found = []

    def walk(obj, i):
        if not isinstance(obj, dict):
            return
        for j in range(i + 1, len(parts) + 1):
            key = ".".join(parts[i:j])
            if key in obj:
                if j == len(parts):
                    found.append(obj[key])
                else:
                    walk(obj[key], j)

    walk(doc, 0)
    assert len({json.dumps(v, sort_keys=True) for v in found}) <= 1, ("ambiguous field", dotted, found)
    return found[0] if found else None


def reduce_ip(value):
    if not isinstance(value, str):
        return None
    s = value
    if s.startswith("["):
        close = s.find("]")
        if close < 0:
            return None
        tail = s[close + 1 :]
        if tail and not (tail.startswith(":") and tail[1:].isdigit()):
            return None
        s = s[1:close]
    elif s.count(":") == 1:
        host, port = s.split(":")
        if not port.isdigit():
            return None
        s = host
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    assert str(ip) == s or s.startswith("::ffff:"), ("fixture ip not in canonical text form", value)
    return str(ip)


def to_utc(ts, raw_shape):
    if raw_shape:
        assert isinstance(ts, str)
        t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.timezone.utc)  # no offset means UTC
    else:
        t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
        assert t.tzinfo is not None
    t = t.astimezone(dt.timezone.utc)
    assert t.microsecond == 0
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def outcome_of(status):
    if isinstance(status, str):
        s = status.lower()
        if s in ("succeeded", "success", "partiallysucceeded", "true"):
            return "success"
        if s in ("failed", "false"):
            return "failure"
    return "success"


def bypass_flag(v):
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return None


def evaluate_record(doc):
    """Returns None (no match) or the evidence dict (without line)."""
    if isinstance(doc.get("_source"), dict):
        doc = doc["_source"]
    is_ecs = isinstance(doc.get("event"), dict) or any(k.startswith("event.") for k in doc)
    if is_ecs:
        ds = lookup(doc, "event.dataset")
        ds2 = lookup(doc, "data_stream.dataset")
        if ds is not None and ds2 is not None:
            assert ds == ds2, "fixture avoids disagreeing datasets"
        dataset = ds if ds is not None else ds2 if ds2 is not None else "o365.audit"
        provider = lookup(doc, "event.provider")
        action = lookup(doc, "event.action")
        outcome = lookup(doc, "event.outcome")
        if not (dataset == "o365.audit" and provider == "Exchange" and action == OP and outcome == "success"):
            return None
        target = lookup(doc, "o365.audit.Parameters.Identity")
        if target is None:
            target = lookup(doc, "o365.audit.ObjectId")
        ip = lookup(doc, "source.ip")
        return {"actor": lookup(doc, "user.id"), "record_id": lookup(doc, "event.id"), "target": target,
                "bypass_enabled": bypass_flag(lookup(doc, "o365.audit.Parameters.AuditBypassEnabled")),
                "source_ip": ip, "timestamp": to_utc(lookup(doc, "@timestamp"), False), "shape": "ecs"}
    assert "Operation" in doc, "fixture avoids candidate lines of unknown shape"
    if not (doc.get("Workload") == "Exchange" and doc.get("Operation") == OP
            and outcome_of(doc.get("ResultStatus")) == "success"):
        return None
    params = {}
    p = doc.get("Parameters")
    if isinstance(p, list):
        for item in p:
            if isinstance(item, dict) and isinstance(item.get("Name"), str) and item.get("Value") is not None:
                params[item["Name"]] = item["Value"]
    elif isinstance(p, str):
        params["_raw"] = p
    target = params.get("Identity", doc.get("ObjectId"))
    present = [doc[k] for k in ("ClientIPAddress", "ClientIP", "ActorIpAddress") if k in doc]
    ip = reduce_ip(present[0]) if present else None
    # The spec's "first of" could mean "first present" or "first that is an IP";
    # the fixtures are built so that both readings agree.
    first_valid = next((reduce_ip(v) for v in present if reduce_ip(v)), None)
    assert ip == first_valid, ("ambiguous source ip", present)
    return {"actor": doc.get("UserId"), "record_id": doc.get("Id"), "target": target,
            "bypass_enabled": bypass_flag(params.get("AuditBypassEnabled")), "source_ip": ip,
            "timestamp": to_utc(doc.get("CreationTime"), True), "shape": "raw"}


def is_blank(line):
    return line.strip(b" \t\r") == b""


def evaluate_file(path):
    raw, data, compressed, err = read_decoded(path)
    complete = data
    partial = b""
    if err is not None:
        # Only complete lines (ending in a newline) are certain to be seen.
        nl = data.rfind(b"\n")
        complete, partial = data[: nl + 1], data[nl + 1 :]
    lines = split_lines(complete)
    res = {"lines": len(lines), "blank": 0, "blank_whitespace_only": 0, "not_candidate": 0, "candidates": 0,
           "not_matched": 0, "malformed": 0, "matched": 0, "malformed_lines": [], "not_matched_lines": [],
           "blank_lines": [], "evidence": [], "classes": []}
    for n, line in enumerate(lines, 1):
        body = line[:-1] if line.endswith(b"\r") else line
        if n == 1 and body.startswith(b"\xef\xbb\xbf"):
            body = body[3:]
        if is_blank(body):
            res["blank"] += 1
            res["blank_lines"].append(n)
            if body:
                res["blank_whitespace_only"] += 1
            res["classes"].append(("blank", None))
            continue
        if OP_B not in line:
            res["not_candidate"] += 1
            res["classes"].append(("noncand", None))
            continue
        res["candidates"] += 1
        try:
            doc = json.loads(body.decode("utf-8"))
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            res["malformed"] += 1
            res["malformed_lines"].append(n)
            res["classes"].append(("malformed", None))
            continue
        ev = evaluate_record(doc)
        if ev is None:
            res["not_matched"] += 1
            res["not_matched_lines"].append(n)
            res["classes"].append(("nomatch", None))
        else:
            res["matched"] += 1
            ev["line"] = n
            res["evidence"].append(ev)
            res["classes"].append(("match", (ev["actor"], ev["target"], ev["bypass_enabled"])))
    assert res["lines"] == res["blank"] + res["not_candidate"] + res["candidates"]
    assert res["candidates"] == res["matched"] + res["not_matched"] + res["malformed"]
    res["file_bytes"] = len(raw)
    res["decompressed_bytes"] = len(data)
    res["compressed"] = compressed
    res["error"] = err
    res["partial_tail"] = partial
    return res


def check_intent(f, res):
    """The evaluation of every line must agree with what the line was written to be."""
    n_seen = len(res["classes"])
    want = [(l.tag, l.expect) for l in f.lines]
    if f.truncate and f.truncate[0] == "mid":
        want = want[:n_seen]
        assert n_seen == f.truncate[1], (f.path, n_seen)
        assert OP_B not in res["partial_tail"] and len(res["partial_tail"]) >= 100
    assert len(want) == n_seen, (f.path, len(want), n_seen)
    for i, (w, got) in enumerate(zip(want, res["classes"]), 1):
        assert w[0] == got[0], (f.path, i, w, got)
        if w[0] == "match":
            assert w[1] == got[1], (f.path, i, w, got)


# ------------------------------------------------------------------ expectations


def walk_sorted(root):
    """Files under root in walkdir order: depth first, entries sorted by name."""
    out = []
    for name in sorted(os.listdir(root)):
        p = os.path.join(root, name)
        if os.path.isdir(p):
            out += walk_sorted(p)
        else:
            out.append(p)
    return out


def rel(p):
    return os.path.relpath(p, HERE).replace(os.sep, "/")


def file_summary(path, res, covers, notes=None):
    actors = {}
    for ev in res["evidence"]:
        actors.setdefault(ev["actor"], []).append(
            {"line": ev["line"], "record_id": ev["record_id"], "target": ev["target"],
             "bypass_enabled": ev["bypass_enabled"], "source_ip": ev["source_ip"], "timestamp": ev["timestamp"]})
    out = {
        "path": "testdata/" + rel(path),
        "covers": covers,
        "lines": res["lines"],
        "blank": res["blank"],
        "malformed": res["malformed"],
        "matched": res["matched"],
        "candidates": res["candidates"],
        "not_candidate": res["not_candidate"],
        "not_matched": res["not_matched"],
        "blank_whitespace_only": res["blank_whitespace_only"],
        "blank_lines": res["blank_lines"],
        "malformed_lines": res["malformed_lines"],
        "not_matched_lines": res["not_matched_lines"],
        "compressed": res["compressed"],
        "file_bytes": res["file_bytes"],
        "decompressed_bytes": res["decompressed_bytes"],
        "error": res["error"],
        "exit_code_alone": 2 if res["error"] else (0 if res["matched"] else 1),
        "actors": {a: sorted(v, key=lambda e: e["line"]) for a, v in sorted(actors.items())},
        "notes": {str(k): v for k, v in sorted((notes or {}).items()) if k <= res["lines"]},
    }
    if res["error"]:
        if res["partial_tail"]:
            out["note"] = ("counts cover the %d complete lines of the prefix zlib can decode; after them "
                           "come %d bytes of line %d (a long non-candidate line), then the data ends"
                           % (res["lines"], len(res["partial_tail"]), res["lines"] + 1))
        else:
            out["note"] = ("every line decodes (%d lines, ending in a newline); only the gzip trailer "
                           "is missing" % res["lines"])
    return out


def dir_totals(summaries, prefix):
    sel = [s for s in summaries if s["path"].startswith(prefix)]
    t = {"files": len(sel)}
    for k in ("lines", "blank", "blank_whitespace_only", "not_candidate", "candidates", "matched",
              "not_matched", "malformed", "file_bytes", "decompressed_bytes"):
        t[k] = sum(s[k] for s in sel)
    t["errors"] = [s["path"] for s in sel if s["error"]]
    t["exit_code"] = 2 if t["errors"] else (0 if t["matched"] else 1)
    actors = {}
    for s in sel:
        for a, evs in s["actors"].items():
            for e in evs:
                actors.setdefault(a, []).append(dict(e, path=s["path"]))
    t["actors"] = {}
    for a in sorted(actors):
        evs = actors[a]
        targets = {}
        for e in evs:
            targets[e["target"]] = targets.get(e["target"], 0) + 1
        t["actors"][a] = {
            "events": len(evs),
            "first_seen": min(e["timestamp"] for e in evs),
            "last_seen": max(e["timestamp"] for e in evs),
            "targets": dict(sorted(targets.items())),
            "source_ips": sorted({e["source_ip"] for e in evs if e["source_ip"]}),
        }
    return t


def dump(obj):
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def main():
    fx = build()
    write_fixtures(fx)
    fixture_paths = [os.path.join(HERE, f.path) for f in fx]

    # Pass 2: evaluate from disk and check the intent of every line.
    summaries = {}
    for f in fx:
        p = os.path.join(HERE, f.path)
        res = evaluate_file(p)
        check_intent(f, res)
        notes = {i: l.note for i, l in enumerate(f.lines, 1) if l.note}
        summaries[p] = file_summary(p, res, f.covers, notes)
    order = [p for p in walk_sorted(HERE) if p in summaries]
    # Full-path byte order equals walkdir's per-directory name order for these names.
    assert order == sorted(order, key=lambda p: rel(p).encode()), order
    fixture_summaries = [summaries[p] for p in order]

    # Cross-checks that do not depend on the evaluator.
    for f in fx:
        s = summaries[os.path.join(HERE, f.path)]
        if not f.truncate:
            assert s["matched"] == sum(l.tag == "match" for l in f.lines), f.path
            assert s["malformed"] == sum(l.tag == "malformed" for l in f.lines), f.path
            assert s["lines"] == len(f.lines), f.path
    size = sum(os.path.getsize(p) for p in fixture_paths)
    assert size < 4_900_000, size
    assert os.path.getsize(os.path.join(HERE, "huge_line_3mb.jsonl")) < 4_000_000

    # Documentation files live inside testdata/ too, so `ualhunt hunt testdata/`
    # reads them; their line counts enter the whole-directory totals. Iterate
    # until the documents describe themselves consistently.
    exp_dir = os.path.join(HERE, "expected")
    docs = {}
    prev = None
    for _ in range(20):
        for p, text in docs.items():
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
        # Everything on disk (fixtures + generator + docs), in walk order.
        all_files = walk_sorted(HERE)
        all_summ = []
        for p in all_files:
            if p in summaries:
                all_summ.append(summaries[p])
            else:
                res = evaluate_file(p)
                assert res["candidates"] == 0, ("doc file contains the literal", p)
                all_summ.append(file_summary(p, res, "documentation / generator (not a fixture)"))
        totals = {
            "note": "Totals per directory (recursive). 'testdata/' counts every file a recursive walk "
                    "finds, including this generator and the expectation documents; "
                    "'fixtures_without_bad' is the sample archive proper (fixtures only, testdata/bad/ "
                    "excluded). Evidence and actor order: walk order (path bytes), then line.",
            "walk_order": [s["path"] for s in all_summ],
            "testdata/": dir_totals(all_summ, "testdata/"),
            "testdata/ without bad/": dir_totals([s for s in all_summ if not s["path"].startswith("testdata/bad/")],
                                                 "testdata/"),
            "fixtures_without_bad": dir_totals([s for s in fixture_summaries
                                                if not s["path"].startswith("testdata/bad/")], "testdata/"),
            "testdata/tree/": dir_totals(all_summ, "testdata/tree/"),
            "testdata/bad/": dir_totals(all_summ, "testdata/bad/"),
        }
        for d in ("testdata/tree/a/", "testdata/tree/a/b/", "testdata/tree/a/b/c/", "testdata/tree/a/b/c/d/",
                  "testdata/expected/"):
            totals[d] = dir_totals(all_summ, d)
        new_docs = {}
        for s in fixture_summaries:
            new_docs[os.path.join(exp_dir, s["path"][len("testdata/"):] + ".json")] = dump(s)
        new_docs[os.path.join(exp_dir, "_totals.json")] = dump(totals)
        new_docs[os.path.join(HERE, "EXPECTED.md")] = render_md(fixture_summaries, totals)
        if new_docs == docs and prev is not None:
            break
        prev, docs = docs, new_docs
    else:
        raise SystemExit("expectation documents did not converge")
    for text in docs.values():
        assert OP not in text and OP.lower() not in text
    with open(__file__, "rb") as fh:
        assert OP_B not in fh.read()
    print("wrote %d fixtures (%d bytes), %d expectation files" % (len(fx), size, len(docs)))


# -------------------------------------------------------------------- EXPECTED.md


def md_cell(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v).replace("|", "\\|")


def render_md(summaries, totals):
    w = []
    w.append("# Expected results for the fixtures in testdata/\n")
    w.append("Generated by `make_fixtures.py` (do not edit by hand; rerun the script). Every number here is "
             "computed by reading the written files back from disk and evaluating them with an independent "
             "implementation of DESIGN.md section 2 and the rule, then checked against what each line was "
             "written to be. Machine-readable copies: `expected/<fixture path>.json` and `expected/_totals.json`.\n")
    w.append("The rule's action literal is the Exchange cmdlet `Set-Mailbox` + `AuditBypassAssociation` (written "
             "split on purpose: this file, the generator and `expected/` never contain it, so they hold no "
             "candidate lines when `ualhunt hunt testdata/` walks into them).\n")
    w.append("## Definitions used\n")
    w.append("- **lines**: every line of the decompressed file, blank ones included; a last line without a "
             "newline counts; the empty string after a final newline does not.\n"
             "- **blank**: empty, or only spaces/tabs (a trailing CR of a CRLF line is not content). "
             "`blank_whitespace_only` says how many of them are not empty, in case the tool counts only "
             "empty lines as blank (those would move to not_candidate).\n"
             "- **candidate**: the line contains the literal as exact, case-sensitive bytes. A prefilter may "
             "report more (false positives are allowed); the only line here that a case-insensitive "
             "prefilter would add is the all-lower-case operation in `decoys_no_match.jsonl` (see its "
             "notes), which would then be not_matched.\n"
             "- **malformed**: a candidate that is not one JSON object (truncated, garbage, two objects on "
             "one line, invalid UTF-8). Non-candidate garbage is never parsed and so never malformed.\n"
             "- **line numbers** are 1-based in the decompressed file; the UTF-8 BOM is stripped before parsing line 1.\n"
             "- **timestamp**: `CreationTime` read as UTC, or ECS `@timestamp` converted to UTC; shown with "
             "whole seconds and `Z` (ECS values carry `.000`; compare instants, not strings).\n"
             "- **source ip**: raw: first present of ClientIPAddress, ClientIP, ActorIpAddress, reduced; "
             "hostname -> null. ECS: `source.ip` as written.\n"
             "- **target**: `Parameters.Identity`, else `ObjectId`. **bypass**: `AuditBypassEnabled` "
             "`True`/`False` in any case, else null.\n"
             "- **exit alone**: exit code when `ualhunt hunt <that file>` is run by itself.\n")
    w.append("## Directory totals\n")
    w.append("| scope | files | lines | blank | not_candidate | candidates | matched | not_matched | malformed | errors | exit |")
    w.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for key in ("fixtures_without_bad", "testdata/ without bad/", "testdata/", "testdata/tree/", "testdata/tree/a/",
                "testdata/tree/a/b/", "testdata/tree/a/b/c/", "testdata/tree/a/b/c/d/", "testdata/bad/",
                "testdata/expected/"):
        t = totals[key]
        w.append("| `%s` | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d |" % (
            key, t["files"], t["lines"], t["blank"], t["not_candidate"], t["candidates"], t["matched"],
            t["not_matched"], t["malformed"], len(t["errors"]), t["exit_code"]))
    w.append("")
    w.append("`fixtures_without_bad` is the sample archive proper: the fixture files outside `bad/`. "
             "`testdata/ without bad/` adds this file, `make_fixtures.py` and `expected/*.json`, which a "
             "recursive walk also reads (no candidates in them). `testdata/` as a whole includes `bad/`, so "
             "`ualhunt hunt testdata/` must exit 2 and still report every match outside `bad/` plus the "
             "matches before the cut in `bad/` (counts for `bad/` are the decodable prefix, see below).\n")
    w.append("### Actors over `fixtures_without_bad` (= over `testdata/ without bad/`)\n")
    w.append("| actor | events | first seen | last seen | targets | source ips |")
    w.append("|---|---|---|---|---|---|")
    for a, v in totals["fixtures_without_bad"]["actors"].items():
        w.append("| `%s` | %d | %s | %s | %d | %s |" % (a, v["events"], v["first_seen"], v["last_seen"],
                                                       len(v["targets"]), ", ".join(v["source_ips"]) or "-"))
    w.append("")
    w.append("### Actors over `testdata/tree/`\n")
    w.append("| actor | events | first seen | last seen | targets |")
    w.append("|---|---|---|---|---|")
    for a, v in totals["testdata/tree/"]["actors"].items():
        w.append("| `%s` | %d | %s | %s | %s |" % (a, v["events"], v["first_seen"], v["last_seen"],
                                                  ", ".join("%s (%d)" % kv for kv in v["targets"].items())))
    w.append("")
    w.append("Walk order of the tree (walkdir, names sorted per directory; equal to full-path byte order here): " +
             ", ".join("`%s`" % s["path"] for s in summaries if s["path"].startswith("testdata/tree/")) + ".\n")
    w.append("## Per fixture\n")
    for s in summaries:
        w.append("### `%s`\n" % s["path"])
        w.append(s["covers"] + "\n")
        w.append("- lines %d, blank %d (whitespace-only %d, at %s), not_candidate %d, candidates %d, matched %d, "
                 "not_matched %d (at %s), malformed %d (at %s)" % (
                     s["lines"], s["blank"], s["blank_whitespace_only"], s["blank_lines"] or "-",
                     s["not_candidate"], s["candidates"], s["matched"], s["not_matched"],
                     s["not_matched_lines"] or "-", s["malformed"], s["malformed_lines"] or "-"))
        w.append("- %s, %d bytes on disk, %d bytes decompressed; exit alone: %d" % (
            "gzip" if s["compressed"] else "plain", s["file_bytes"], s["decompressed_bytes"], s["exit_code_alone"]))
        if s["error"]:
            w.append("- **error**: %s. %s" % (s["error"], s["note"]))
        w.append("")
        if s["actors"]:
            w.append("| line | actor | target | bypass | record id | source ip | timestamp |")
            w.append("|---|---|---|---|---|---|---|")
            rows = [(e["line"], a, e) for a, evs in s["actors"].items() for e in evs]
            for line, a, e in sorted(rows, key=lambda r: r[0]):
                w.append("| %d | `%s` | `%s` | %s | `%s` | %s | %s |" % (
                    line, a.replace("|", "\\|"), str(e["target"]).replace("|", "\\|"), md_cell(e["bypass_enabled"]),
                    e["record_id"], md_cell(e["source_ip"]), e["timestamp"]))
            w.append("")
        if s["notes"]:
            w.append("Line notes:\n")
            for line, note in sorted(s["notes"].items(), key=lambda kv: int(kv[0])):
                w.append("- line %s: %s" % (line, note))
            w.append("")
    w.append("## Semantics choices and open questions\n")
    w.append("- ECS documents without `event.outcome` do not match (KQL needs the field; the raw-record default "
             "'absent -> success' is part of the raw mapping only): see the notes of `decoys_no_match.jsonl`.\n"
             "- Source IP 'first of': the fixtures never have a hostname in an earlier field and an IP in a later "
             "one, so 'first present' and 'first that is an IP' give the same answers.\n"
             "- `bad/` counts are what zlib decodes before the stream ends; another inflater may stop a few "
             "bytes earlier, which changes nothing here (the cut is >= 100 bytes into a long non-candidate line).\n"
             "- Matches in the complete lines before a truncation are listed as expected findings; a tool "
             "that drops a failed file's findings entirely would report none of them (exit 2 either way).\n")
    return "\n".join(w) + "\n"


if __name__ == "__main__":
    sys.exit(main())
