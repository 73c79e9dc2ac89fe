# The modem's replies, read: pure functions from reply lines (str, as the AT channel gives
# them) to values, shared by every family, so that tests run them without a modem. Nothing
# here sends a command or keeps state.
#
# The module is loaded on the device's heap next to the whole application: few functions,
# short strings, tables as one string split when read (a tuple's strings would each cost heap).
from app.errors import FirmwareError

# 27.007 +CREG/+CGREG/+CEREG <stat>, by code, named as the spec names them: 0 not registered,
# 1 registered home, 2 searching, 3 denied, 4 unknown, 5 registered roaming, 6 SMS only home,
# 7 SMS only roaming, 8 attached for emergency bearer services only, 9 CSFB not preferred
# home, 10 CSFB not preferred roaming, 11 attached for access to RLOS.
STATES = ("not_registered registered_home searching denied unknown registered_roaming "
          "sms_only_home sms_only_roaming emergency_only csfb_not_preferred_home "
          "csfb_not_preferred_roaming rlos")
# 27.007 <AcT> by code: GSM, GSM compact, UTRAN, EGPRS, HSDPA, HSUPA, HSPA, E-UTRAN,
# EC-GSM-IoT, E-UTRAN NB-S1. A family whose manual numbers them otherwise overrides it.
ACT_NAMES = "GSM GSM UMTS EDGE HSPA HSPA HSPA LTE EC-GSM-IoT NB-IoT"
_HEX = "0123456789ABCDEF"


class ModemError(FirmwareError):
    # The modem refused, or answered something that makes no sense; `code` is the +CME code
    # (int, or text under AT+CMEE=2) or the family's result code, when there is one.
    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


def bad_reply(what, reply):
    # The error for a reply (a line or a list of lines) that makes no sense.
    return ModemError("%s: bad reply %r" % (what, reply))


def val(field):
    # A field without its spaces and quotes.
    return field.strip().strip('"')


def num(field):
    # An int field, or None when empty or not a number.
    try:
        return int(val(field))
    except ValueError:
        return None


def find(lines, prefix):
    # The fields after `prefix` on the first line carrying it (quotes kept), or None.
    for line in lines:
        if line.startswith(prefix):
            return [f.strip() for f in line[len(prefix):].split(",")]
    return None


def result(lines, prefix):
    # The result code first after `prefix` ("+CAOPEN: 0," -> 0 or an error code), or None.
    f = find(lines, prefix)
    return num(f[0]) if f else None


def text(lines, prefix):
    # The rest of the first line after `prefix`, unquoted ("+CPIN: READY" -> "READY"), or
    # None: for replies that are one free-text value (+CPIN, +CEER).
    for line in lines:
        if line.startswith(prefix):
            return val(line[len(prefix):]) or None
    return None


def parse_cgdcont(lines):
    # +CGDCONT: <cid>,<PDP_type>,<APN>[,...] -> [(cid, type, apn)]
    out = []
    for line in lines:
        f = find((line,), "+CGDCONT:")
        if f is not None:
            if len(f) < 3 or num(f[0]) is None:
                raise bad_reply("apn", line)
            out.append((num(f[0]), val(f[1]), val(f[2])))
    return out


def luhn_ok(digits):
    # The last digit is the Luhn check digit of the others (IMEI, a decimal ICCID).
    total = 0
    n = len(digits)
    for i in range(n):
        d = (ord(digits[n - 1 - i]) - 48) * (1 + i % 2)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def parse_id(lines, what):
    # "iccid", "imei", "imsi" or "revision" from a reply in any family's form: bare, after a
    # prefix (+CCID:, +ICCID:, +QCCID:, Revision:, +CGMR:), quoted.
    # ICCIDs (ITU-T E.118, 19-22 characters) are not always decimal: some issuers put hex
    # digits in them and some pad them with a trailing F. They come back upper-case, without
    # the padding; the Luhn check applies only to an all-decimal one. IMEI 15 digits with its
    # Luhn check digit; IMSI up to 15 (MCC + MNC + MSIN).
    for line in lines:
        v = val(line[line.find(":") + 1:])
        if what == "revision":
            if v:
                return v
            continue
        lo, hi = (19, 22) if what == "iccid" else (15, 15) if what == "imei" else (14, 15)
        if what == "iccid":
            v = v.upper().rstrip("F")
            if not (v and lo <= len(v) <= hi and not v.strip(_HEX)):
                continue
        elif not (v.isdigit() and lo <= len(v) <= hi):
            continue
        if what != "imsi" and v.isdigit() and not luhn_ok(v):
            raise ModemError("%s: %s fails its Luhn check" % (what, v))
        return v
    raise ModemError("%s: none in reply %r" % (what, lines))


def parse_csq(lines):
    # +CSQ: <rssi>,<ber>: rssi 0..31 is -113 dBm + 2 dBm a step, 99 unknown; ber 0..7.
    f = find(lines, "+CSQ:") or ()
    rssi, ber = (num(f[0]), num(f[1])) if len(f) == 2 else (None, None)
    if rssi is None or ber is None:
        raise bad_reply("signal", lines)
    return {"rssi_dbm": -113 + 2 * rssi if 0 <= rssi <= 31 else None,
            "ber": ber if 0 <= ber <= 7 else None}


def parse_cereg(line, act_names=ACT_NAMES):
    # +CEREG (and +CREG/+CGREG) as AT+CEREG? answers, "<n>,<stat>[,<tac>,<ci>,<AcT>[,
    # <cause_type>,<reject_cause>]]", or as a URC, "<stat>[,<tac>,...]". Area and cell codes
    # are quoted hex, so a bare number second means the first was <n>. The reject cause comes
    # with AT+CEREG=3 (27.007: <cause_type> 0 is an EMM cause, 24.301 annex A).
    f = [x.strip() for x in line[line.find(":") + 1:].split(",")]
    if len(f) > 1 and f[1] and f[1][0] != '"':
        f = f[1:]
    stat = num(f[0])
    states = STATES.split()
    if stat is None or not 0 <= stat < len(states):
        raise bad_reply("registration", line)
    f += [""] * (6 - len(f))
    act = num(f[3])
    if act is not None:
        names = act_names.split()
        act = names[act] if act < len(names) else str(act)
    return {
        "stat": stat, "state": states[stat],
        "registered": stat in (1, 5, 9, 10),  # registered with data (EPS) service
        "denied": stat == 3, "sms_only": stat in (6, 7),
        "tac": val(f[1]).upper() or None, "ci": val(f[2]).upper() or None, "act": act,
        "cause": num(f[5]),  # EMM reject cause
    }


def parse_cops(lines):
    # +COPS: <mode>[,<format>,<oper>[,<AcT>]]: the operator's name (or numeric PLMN, as the
    # format says), None when not registered.
    f = find(lines, "+COPS:")
    return val(f[2]) or None if f and len(f) > 2 else None


def lte_act(mode):
    # A serving system as +CPSI, +QCSQ and +QNWINFO name it: "LTE CAT-M1", "eMTC", "CAT-NB1",
    # "NBIoT", "NO SERVICE"/"NOSERVICE"/"No Service", "LTE", "GSM", "WCDMA".
    m = val(mode).upper()
    if "CAT-M" in m or m == "EMTC":
        return "LTE-M"
    if "NB" in m:
        return "NB-IoT"
    if m.startswith("NO"):
        return None
    return "UMTS" if m == "WCDMA" else val(mode)


def band(text):
    # "EUTRAN-BAND3" / "LTE BAND 3" -> 3; other band names stay text.
    t = val(text)
    i = t.upper().find("BAND")
    return int(t[i + 4:]) if i >= 0 and t[i + 4:].strip().isdigit() else t or None


def parse_cpsi(lines, scale, snr_mul, snr_add):
    # SIMCom's +CPSI: <mode>,<op mode>[,<MCC>-<MNC>,<TAC>,<SCellID>,<PCellID>,<band>,<earfcn>,
    # <dlbw>,<ulbw>,<RSRQ>,<RSRP>,<RSSI>,<RSSNR>] on LTE. RSRQ and RSRP are divided by `scale`
    # and SINR = RSSNR * snr_mul + snr_add: the SIMCom families print different units.
    f = find(lines, "+CPSI:")
    if not f:
        return {}
    out = {"act": lte_act(f[0])}
    if out["act"] and len(f) > 2:
        out["operator"] = val(f[2]) or None
    if out["act"] and len(f) >= 14 and f[0].upper().startswith("LTE"):
        rsrq, rsrp, snr = num(f[10]), num(f[11]), num(f[13])
        out["band"] = band(f[6])
        out["rsrq"] = rsrq / scale if rsrq is not None and scale != 1 else rsrq
        out["rsrp"] = rsrp / scale if rsrp is not None and scale != 1 else rsrp
        out["sinr"] = snr * snr_mul + snr_add if snr is not None else None
    return out
