#!/usr/bin/env python3
"""tb_logins.py PROFILE USER PASSWORD ORIGIN=REALM...: a Thunderbird password store.

Writes PROFILE/key4.db (NSS, empty primary password) and PROFILE/logins.json
holding USER/PASSWORD for each ORIGIN=REALM pair, encrypted the way
Thunderbird's login manager does (PK11SDR_Encrypt with the profile's key),
so Thunderbird starts logged in without asking. Uses the libnss3 that comes
with Thunderbird, through ctypes.
"""
import base64
import ctypes
import ctypes.util
import json
import sys
import time
import uuid

profile, user, password, *pairs = sys.argv[1:]


class SECItem(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint), ("data", ctypes.c_void_p), ("len", ctypes.c_uint)]


nss = None
for name in ("/usr/lib/thunderbird/libnss3.so", ctypes.util.find_library("nss3"), "libnss3.so"):
    if not name:
        continue
    try:
        nss = ctypes.CDLL(name)
        break
    except OSError:
        continue
if nss is None:
    sys.exit("tb_logins: libnss3 not found")

nss.NSS_Initialize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
nss.PK11_GetInternalKeySlot.restype = ctypes.c_void_p
nss.PK11_NeedUserInit.argtypes = [ctypes.c_void_p]
nss.PK11_InitPin.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
nss.PK11SDR_Encrypt.argtypes = [ctypes.POINTER(SECItem), ctypes.POINTER(SECItem), ctypes.POINTER(SECItem), ctypes.c_void_p]

if nss.NSS_Initialize(("sql:" + profile).encode(), b"", b"", b"secmod.db", 0) != 0:
    sys.exit("tb_logins: NSS_Initialize failed")
slot = nss.PK11_GetInternalKeySlot()
if nss.PK11_NeedUserInit(slot) and nss.PK11_InitPin(slot, None, b"") != 0:
    sys.exit("tb_logins: PK11_InitPin failed")


def encrypt(text):
    raw = text.encode()
    buf = ctypes.create_string_buffer(raw, len(raw))
    data = SECItem(0, ctypes.cast(buf, ctypes.c_void_p), len(raw))
    keyid = SECItem(0, None, 0)
    out = SECItem(0, None, 0)
    if nss.PK11SDR_Encrypt(ctypes.byref(keyid), ctypes.byref(data), ctypes.byref(out), None) != 0:
        sys.exit("tb_logins: PK11SDR_Encrypt failed")
    return base64.b64encode(ctypes.string_at(out.data, out.len)).decode()


now = int(time.time() * 1000)
logins = []
for i, pair in enumerate(pairs, 1):
    origin, realm = pair.split("=", 1)
    logins.append({
        "id": i, "hostname": origin, "httpRealm": realm, "formSubmitURL": None,
        "usernameField": "", "passwordField": "",
        "encryptedUsername": encrypt(user), "encryptedPassword": encrypt(password),
        "guid": "{%s}" % uuid.uuid4(), "encType": 1,
        "timeCreated": now, "timeLastUsed": now, "timePasswordChanged": now, "timesUsed": 1,
    })
with open(f"{profile}/logins.json", "w") as f:
    json.dump({"nextId": len(logins) + 1, "logins": logins, "potentiallyVulnerablePasswords": [],
               "dismissedBreachAlertsByLoginGUID": {}, "version": 3}, f)
nss.NSS_Shutdown()
