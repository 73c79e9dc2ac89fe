"""The services' errors: bad rules files, bad site lists, refused order changes."""

from __future__ import annotations

from musket.errors import BadInput


class ServicesInput(BadInput):
    """Input the services cannot use (a rules file, a site list, a period, a state); nothing
    was changed."""


class RulesError(ServicesInput):
    """A rules file that does not validate; the message names the file, line and field."""


class OrderStateError(ServicesInput):
    """An order state that does not exist, or a transition an order cannot make."""


class TicketError(ServicesInput):
    """A ticket that does not exist or is already closed, or a close without its repair."""
