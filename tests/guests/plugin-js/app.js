// A whole `plugin` component in JavaScript, built with componentize-js's default flags: the
// host's test that such a build loads, answers a price export, and that an Error it throws
// reaches the operator with its message.
//
// The price list lists every module at its upstream one-month cost. Settings (`[pricing]`):
// `{"mode": "throw"}` throws an Error from the price export instead. Order hooks refuse.
import { get } from 'billing:reseller/catalogue@0.2.0';
import { emit } from 'billing:reseller/log@0.2.0';

const UNITS = 10_000n;

function amount(units) {
  const sign = units < 0n ? '-' : '';
  const abs = units < 0n ? -units : units;
  return `${sign}${abs / UNITS}.${String(abs % UNITS).padStart(4, '0')}`;
}

export const pricing = {
  exportPrices(query) {
    const snapshot = get();
    if (JSON.parse(snapshot.settings).mode === 'throw') {
      throw new Error('the JavaScript guest throws on purpose');
    }
    const lines = [];
    for (const offer of snapshot.offers) {
      const month = offer.upstreamCosts.find((c) => c.months === 1);
      if (month !== undefined) {
        lines.push(`<pricelist><id>${offer.tariffId}</id>`
          + `<cost currency="${month.cost.currency}">${amount(month.cost.units)}</cost></pricelist>`);
      }
    }
    emit('debug', `listed ${lines.length} modules`);
    const body = `<?xml version="1.0" encoding="UTF-8"?>\n<doc>${lines.join('')}</doc>`;
    return { contentType: 'text/xml; charset=utf-8', body: new TextEncoder().encode(body) };
  },
};

function refuse() {
  throw { tag: 'other', val: 'this test plugin takes no orders' };
}

export const orders = {
  place: refuse,
  rebind: refuse,
  renew: refuse,
  quoteRenewal: refuse,
  suspend: refuse,
  resume: refuse,
  remove: refuse,
  service: refuse,
  services: refuse,
  balance: refuse,
  upstreamCosts: refuse,
};
