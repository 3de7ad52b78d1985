"""A whole `plugin` component in Python, built with componentize-py's default flags: the host's
test that such a build loads, answers a price export, and that an exception it raises reaches
the operator with its message.

The price list lists every module at its upstream one-month cost. Settings (`[pricing]`):
`{"mode": "raise"}` raises an exception from the price export instead. Order hooks refuse.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.pricing import Document
from wit_world.imports import catalogue, log
from wit_world.imports.types import OrderError_Other

UNITS = 10_000


def amount(units):
    sign = "-" if units < 0 else ""
    units = abs(units)
    return f"{sign}{units // UNITS}.{units % UNITS:04d}"


class Pricing(exports.Pricing):
    def export_prices(self, query):
        snapshot = catalogue.get()
        if json.loads(snapshot.settings).get("mode") == "raise":
            raise RuntimeError("the Python guest raises on purpose")
        lines = []
        for offer in snapshot.offers:
            month = next((c.cost for c in offer.upstream_costs if c.months == 1), None)
            if month is not None:
                lines.append(f"<pricelist><id>{offer.tariff_id}</id>"
                             f"<cost currency=\"{month.currency}\">{amount(month.units)}</cost></pricelist>")
        log.emit(log.Level.DEBUG, f"listed {len(lines)} modules")
        body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<doc>" + "".join(lines) + "</doc>"
        return Document("text/xml; charset=utf-8", body.encode())


def refuse():
    raise Err(OrderError_Other("this test plugin takes no orders"))


class Orders(exports.Orders):
    def place(self, order):
        refuse()

    def rebind(self, service_id, licence_id):
        refuse()

    def renew(self, service_id, period):
        refuse()

    def quote_renewal(self, service_id, period):
        refuse()

    def suspend(self, service_id):
        refuse()

    def resume(self, service_id):
        refuse()

    def remove(self, service_id):
        refuse()

    def service(self, service_id):
        refuse()

    def services(self):
        refuse()

    def balance(self):
        refuse()

    def upstream_costs(self):
        refuse()
