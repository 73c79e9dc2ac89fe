# The modem model's scenarios seen from the UART (tests/sim/test_modem_model.py): each step
# drives the modem with raw AT (atscript.py) and shows what came back.
import time

import machine
from atscript import (
    BOOT_LAST,
    M,
    boot_and_register,
    cmd,
    now,
    press,
    pump,
    running,
    send,
    show,
    take,
    uart,
)


def coverage_loss(port):
    boot_and_register()
    cmd("AT+CNACT=0,1", until=b"ACTIVE\r\n")
    show("OPEN", cmd('AT+CAOPEN=0,0,"TCP","127.0.0.1",%d' % port))
    pump(60000, b"+CEREG: 2\r\n")
    show("LOST_MS", now())
    show("LOST", take())
    show("CSQ", cmd("AT+CSQ"))
    pump(30000, b"+APP PDP: 0,DEACTIVE\r\n")
    show("DATA_LOST_MS", now())
    show("DATA_LOST", take())
    show("SEND", cmd("AT+CASEND=0,5"))
    pump(60000, b"+CEREG: 1,")
    show("BACK_MS", now())
    show("CNACT", cmd("AT+CNACT=0,1", until=b"ACTIVE\r\n"))


def denied_until_cleared():
    boot_and_register(until=None, ms=8000)
    show("DENIED", cmd("AT+CEREG?"))
    show("QIACT", cmd("AT+QIACT=1"))
    pump(60000, b"+CEREG: 1,")
    show("CLEARED_MS", now())
    show("QIACT2", cmd("AT+QIACT=1"))


def sms_only():
    boot_and_register(until=b"+CEREG: 6,")
    show("CREG", cmd("AT+CREG?"))
    show("NETOPEN", cmd("AT+NETOPEN", until=b"+NETOPEN: ") + (pump(100) or take()))


def hang_until_power_cycle():
    boot_and_register()
    time.sleep(30)
    show("HUNG", cmd("AT", ms=2000))
    show("HUNG_STATUS", running())
    press(M["pwrkey_on_ms"])  # an on pulse does not switch a running modem off
    show("STILL_HUNG", cmd("AT", ms=2000))
    press(M["pwrkey_off_ms"])
    pump(M["power_off_ms"])
    show("OFF_STATUS", running())
    press(M["pwrkey_on_ms"])
    pump(20000, BOOT_LAST)
    show("REBOOTED", take())
    show("AT", cmd("AT"))


def drop_data(port):
    boot_and_register()
    cmd('AT+QICSGP=1,1,"","","",1')
    cmd("AT+QIACT=1")
    show("OPEN", cmd('AT+QIOPEN=1,0,"TCP","localhost",%d,0,0' % port, until=b"+QIOPEN: 0,"))
    pump(60000, b"pdpdeact")
    show("DROP_MS", now())
    show("DROP", take())
    show("CEREG", cmd("AT+CEREG?"))
    show("QIACT", cmd("AT+QIACT?"))
    show("QISEND", cmd("AT+QISEND=0,5"))


def garbage_and_slow_replies():
    press(M["pwrkey_on_ms"])
    pump(20000, BOOT_LAST)
    take()
    pump(15000)
    show("NOISE", take())
    t0 = now()
    show("SLOW", cmd("AT+CSQ"))
    show("SLOW_MS", now() - t0)


def sim_swap():
    boot_and_register()
    show("BEFORE", cmd("AT+QCCID"))
    show("IMSI_BEFORE", cmd("AT+CIMI"))
    time.sleep(20)
    show("STILL", cmd("AT+QCCID"))
    cmd("AT+QPOWD", until=b"POWERED DOWN\r\n")
    pump(3000)
    press(M["pwrkey_on_ms"])
    pump(20000, BOOT_LAST)
    cmd("ATE0")
    show("AFTER", cmd("AT+QCCID"))
    show("IMSI_AFTER", cmd("AT+CIMI"))


def loopback_only(port, closed):
    boot_and_register()
    cmd("AT+CNACT=0,1", until=b"ACTIVE\r\n")
    show("OFF_MACHINE", cmd('AT+CAOPEN=0,0,"TCP","10.0.0.1",%d' % port))
    show("NAME", cmd('AT+CAOPEN=1,0,"TCP","example.com",%d' % port))
    show("REFUSED", cmd('AT+CAOPEN=2,0,"TCP","127.0.0.1",%d' % closed))
    show("MAPPED", cmd('AT+CAOPEN=3,0,"TCP","broker.example.com",1'))


def uart_rxbuf(port):
    boot_and_register()
    cmd("AT+CNACT=0,1", until=b"ACTIVE\r\n")
    cmd('AT+CAOPEN=0,0,"TCP","127.0.0.1",%d' % port)
    uart.init(baudrate=M["baudrate"], rxbuf=256)
    for attempt in ("READING", "ASLEEP"):
        send("AT+CASEND=0,1000", b"x" * 1000, b"OK\r\n")
        pump(3000, b"+CADATAIND: 0\r\n")
        take()
        before = uart.overflows  # type: ignore[attr-defined]  # the sim's count of lost bytes
        uart.write(b"AT+CARECV=0,1000\r\n")
        if attempt == "ASLEEP":
            time.sleep_ms(300)
        pump(1000, b"\r\nOK\r\n")
        taken = len(take())
        show(attempt, (taken, uart.overflows - before))  # type: ignore[attr-defined]


def denial_cause():
    boot_and_register(n=3)
    pump(20000, b"+CEREG: 3,")
    show("URC", take())
    show("READ", cmd("AT+CEREG?"))
    show("CEER", cmd("AT+CEER"))
    cmd("AT+CEREG=2")
    show("N2", cmd("AT+CEREG?"))


def refused_send(opener, bearer, bearer_up, send_line):
    boot_and_register()
    cmd("AT+CMEE=2")
    cmd(bearer, until=bearer_up)
    pump(200)
    cmd(opener, until=b",0\r\n")
    show("OPEN_MS", now())
    pump(65000 - now(), b"never")
    show("QUIET", take())
    show("REFUSED", cmd(send_line))


def closed_as_it_opens(port):
    boot_and_register()
    cmd("AT+CNACT=0,1", until=b"ACTIVE\r\n")
    show("FIRST", cmd('AT+CAOPEN=0,0,"TCP","127.0.0.1",%d' % port, until=b"+CASTATE"))
    pump(100)
    show("FIRST_TAIL", take())
    show("SEND", cmd("AT+CASEND=0,5"))
    show("CLOSE", cmd("AT+CACLOSE=0"))
    show("SECOND", cmd('AT+CAOPEN=1,0,"TCP","127.0.0.1",%d' % port))
    pump(200)
    show("SECOND_TAIL", take())


def restart_by_itself():
    boot_and_register()
    pump(40000, b"RDY\r\n")
    show("RESTART_MS", now())
    pump(20000, BOOT_LAST)
    show("BOOT", take())
    show("AT", cmd("AT"))
    show("CEREG", cmd("AT+CEREG?"))


def quectel_push(port):
    boot_and_register()
    cmd('AT+QICSGP=1,1,"","","",1')
    cmd("AT+QIACT=1")
    cmd('AT+QIOPEN=1,0,"TCP","127.0.0.1",%d,0,0' % port, until=b"+QIOPEN: 0,0\r\n")
    show("SEND", send("AT+QISEND=0,11", b"hello world", b"SEND OK\r\n"))
    pump(3000, b"hello world")
    show("PUSHED", take())
    show("QIRD", cmd("AT+QIRD=0,1500"))


def sim7000_bearer(port):
    boot_and_register()
    show("CGMR", cmd("AT+CGMR"))
    show("DOWN", cmd("AT+CNACT?"))
    show("UP", cmd('AT+CNACT=1,"iot.musket"', until=b"+APP PDP: ACTIVE\r\n"))
    show("READ", cmd("AT+CNACT?"))
    show("OPEN", cmd('AT+CAOPEN=0,0,"TCP","127.0.0.1",%d' % port))
    show("OFF", cmd("AT+CNACT=0", until=b"DEACTIVE\r\n"))


def iccid_as_reported():
    boot_and_register()
    show("CCID", cmd("AT+CCID"))
    show("CIMI", cmd("AT+CIMI"))


def no_sim_and_errors():
    press(M["pwrkey_on_ms"])
    pump(20000, b"+CPIN: NOT INSERTED\r\n")
    show("BOOT", take())
    cmd("ATE0")
    show("CMEE0", cmd("AT+CPIN?"))
    cmd("AT+CMEE=1")
    show("CMEE1", cmd("AT+CPIN?"))
    show("CHAIN", cmd("AT+CMEE=2;+CCID"))
    show("UNKNOWN", cmd("AT+FROBNICATE"))
    show("BAD_PARAM", cmd("AT+CEREG=9"))
    pump(15000)
    show("CEREG", cmd("AT+CEREG?"))


def stale_apn():
    boot_and_register()
    show("CGDCONT", cmd("AT+CGDCONT?"))
    show("WRONG", cmd("AT+NETOPEN", until=b"+NETOPEN: ") + (pump(100) or take()))
    cmd('AT+CGDCONT=1,"IP","iot.musket"')
    show("RIGHT", cmd("AT+NETOPEN", until=b"+NETOPEN: 0\r\n"))
    show("ADDR", cmd("AT+CGPADDR"))


def after_reset():
    show("B2_STATUS", running())
    show("B2_AT", cmd("AT", ms=2000))
    press(M["pwrkey_off_ms"])
    pump(M["power_off_ms"])
    press(M["pwrkey_on_ms"])
    pump(20000, BOOT_LAST)
    take()
    show("B2_FRESH", cmd("AT"))


def reset_while_hung():
    boot_and_register()
    show("B1_AT", cmd("AT"))
    time.sleep(30)
    machine.reset()
