# Each family's whole flow against the modem model (tests/sim/test_modem_model.py): boot,
# identities, signal, registration, a TCP echo through the family's send and receive
# commands, the server closing, and the modem switched off. Keys are shown in order.
import time

import machine
from atscript import (
    BOOT_LAST,
    ICCID_CMD,
    M,
    P,
    cmd,
    level,
    now,
    press,
    pump,
    running,
    send,
    show,
    supply,
    take,
)


def flow_start():
    show("STATUS_OFF", running())
    press(100)  # far shorter than any on time: nothing happens
    pump(M["boot_ms"] + 2000)
    show("SHORT_PULSE", (take(), running()))
    press(M["pwrkey_on_ms"])
    pump(20000, b"RDY\r\n")
    t_rdy = now()
    pump(20000, BOOT_LAST)
    show("BOOT", take())
    show("STATUS_ON", running())
    show("AT", cmd("AT"))
    show("ATE0", cmd("ATE0"))
    show("CGSN", cmd("AT+CGSN"))
    show("CIMI", cmd("AT+CIMI"))
    show("ICCID", cmd(ICCID_CMD))
    show("CGMR", cmd("AT+CGMR"))
    show("CSQ", cmd("AT+CSQ"))
    show("CEREG_SEARCHING", cmd("AT+CEREG?"))
    cmd("AT+CEREG=2")
    pump(20000, b"+CEREG: 1,")
    show("REG_URC", take())
    show("REG_MS", now() - t_rdy)
    show("CEREG", cmd("AT+CEREG?"))
    show("COPS", cmd("AT+COPS?"))


def flow_sim7080(port):
    show("SIGNAL", cmd("AT+CPSI?"))
    cmd('AT+CNCFG=0,1,"iot.musket"')
    show("PDP", cmd("AT+CNACT=0,1", until=b"+APP PDP: 0,ACTIVE\r\n"))
    show("PDP_Q", cmd("AT+CNACT?"))
    show("OPEN", cmd('AT+CAOPEN=0,0,"TCP","127.0.0.1",%d' % port))
    show("SEND", send("AT+CASEND=0,11", b"hello world", b"OK\r\n"))
    pump(3000, b"+CADATAIND: 0\r\n")
    show("DATA_URC", take())
    show("READ", cmd("AT+CARECV=0,100"))
    show("READ_EMPTY", cmd("AT+CARECV=0,100"))
    show("SEND2", send("AT+CASEND=0,5", b"CLOSE", b"OK\r\n"))
    pump(3000, b"+CASTATE: 0,0\r\n")
    show("CLOSED_URC", take())
    show("READ2", cmd("AT+CARECV=0,100"))
    show("CLOSE", cmd("AT+CACLOSE=0"))
    show("OFF", cmd("AT+CPOWD=1", until=b"NORMAL POWER DOWN\r\n"))
    pump(8000)
    show("STATUS_DOWN", running())


def flow_sim7600(port):
    show("SIGNAL", cmd("AT+CPSI?"))
    cmd("AT+CIPRXGET=1")
    show("PDP", cmd("AT+NETOPEN", until=b"+NETOPEN: 0\r\n"))
    show("PDP_Q", cmd("AT+NETOPEN"))
    show("OPEN", cmd('AT+CIPOPEN=0,"TCP","127.0.0.1",%d' % port, until=b"+CIPOPEN: 0,0\r\n"))
    show("SEND", send("AT+CIPSEND=0,11", b"hello world", b"+CIPSEND: 0,11,11\r\n"))
    pump(3000, b"+CIPRXGET: 1,0\r\n")
    show("DATA_URC", take())
    show("READ", cmd("AT+CIPRXGET=2,0,5"))
    show("READ_REST", cmd("AT+CIPRXGET=2,0,100"))
    show("SEND2", send("AT+CIPSEND=0,5", b"CLOSE", b"+CIPSEND: 0,5,5\r\n"))
    pump(3000, b"+IPCLOSE: 0,1\r\n")
    show("CLOSED_URC", take())
    show("READ2", cmd("AT+CIPRXGET=2,0,100"))
    show("CLOSE", cmd("AT+CIPCLOSE=0", until=b"+CIPCLOSE: 0,0\r\n"))
    rst = machine.Pin(P["reset"]["pin"], machine.Pin.OUT, value=level("reset", False))
    rst.value(level("reset", True))
    time.sleep_ms(200)
    rst.value(level("reset", False))
    show("RESET_STATUS", running())
    pump(20000, b"PB DONE\r\n")
    show("RESET_BOOT", take())
    show("RESET_AT", cmd("AT"))
    supply.value(level("modem_power", False))
    show("STATUS_DOWN", running())


def flow_bg95(port):
    show("SIGNAL", cmd("AT+QCSQ"))
    show("NWINFO", cmd("AT+QNWINFO"))
    cmd('AT+QICSGP=1,1,"iot.musket","","",1')
    show("PDP", cmd("AT+QIACT=1"))
    show("PDP_Q", cmd("AT+QIACT?"))
    show("OPEN", cmd('AT+QIOPEN=1,0,"TCP","127.0.0.1",%d,0,0' % port, until=b"+QIOPEN: 0,0\r\n"))
    show("SEND", send("AT+QISEND=0,11", b"hello world", b"SEND OK\r\n"))
    pump(3000, b'+QIURC: "recv",0\r\n')
    show("DATA_URC", take())
    show("READ", cmd("AT+QIRD=0,1500"))
    show("READ_EMPTY", cmd("AT+QIRD=0,1500"))
    show("SEND2", send("AT+QISEND=0,5", b"CLOSE", b"SEND OK\r\n"))
    pump(3000, b'+QIURC: "closed",0\r\n')
    show("CLOSED_URC", take())
    show("READ2", cmd("AT+QIRD=0,1500"))
    show("CLOSE", cmd("AT+QICLOSE=0"))
    show("OFF", cmd("AT+QPOWD", until=b"POWERED DOWN\r\n"))
    pump(3000)
    show("STATUS_DOWN", running())



def flow(port):
    """The board's family's flow, with the echo server on `port`."""
    flow_start()
    {"sim7080": flow_sim7080, "sim7600": flow_sim7600, "bg95": flow_bg95}[M["family"]](port)
