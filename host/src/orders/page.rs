//! The host's own pages for the end user's browser: the order page a Buy redirect leads to when
//! no checkout URL is configured, and the page that explains a refused redirect. Plain HTML,
//! every value escaped, no script and nothing loaded from elsewhere.

use quick_xml::escape::escape;

use super::{Order, OrderState};
use crate::money::Months;

/// The order page: what was ordered, for which licence, at what price, and where it stands.
pub fn order_page(order: &Order) -> String {
    let state = match order.state {
        OrderState::New => "Awaiting payment",
        OrderState::Paid | OrderState::Placing => "Paid; the module is being ordered",
        OrderState::Placed => {
            "Ordered. The panel shows the module after its next licence refresh \
             (about daily, or at once with “Update license information”)."
        }
        OrderState::Failed | OrderState::InDoubt => "Paid; our staff are completing the order",
        OrderState::Cancelled => "Cancelled",
        OrderState::Removed => "Removed",
    };
    let ip = order
        .licence_ip
        .map(|ip| format!("<tr><th>Licence IP</th><td>{ip}</td></tr>"))
        .unwrap_or_default();
    let months = if order.period == Months::MONTH {
        "1 month".to_owned()
    } else {
        format!("{} months", order.period)
    };
    page(
        "Your order",
        &format!(
            "<h1>Order {id}</h1>\n<table>\n\
             <tr><th>Module</th><td>{module} (tariff {tariff})</td></tr>\n\
             <tr><th>Licence</th><td>{licence}</td></tr>\n{ip}\n\
             <tr><th>Period</th><td>{months}</td></tr>\n\
             <tr><th>Price</th><td>{price}</td></tr>\n\
             <tr><th>Status</th><td>{state}</td></tr>\n</table>\n\
             <p>Quote the order number when you pay or contact us.</p>",
            id = escape(order.id.as_str()),
            module = escape(&order.service_name),
            tariff = order.tariff_id,
            licence = escape(&order.licence_id),
            price = escape(order.price.to_string()),
        ),
    )
}

/// A page saying why a request was refused.
pub fn error_page(title: &str, message: &str) -> String {
    page(
        title,
        &format!("<h1>{}</h1>\n<p>{}</p>", escape(title), escape(message)),
    )
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}}\
         th{{text-align:left;padding-right:1em}}</style></head>\n<body>\n{body}\n</body></html>\n",
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;
    use crate::orders::OrderId;

    #[test]
    fn values_are_escaped() {
        let order = Order {
            id: OrderId::from_parts(1_700_000_000_000, [1; 10]),
            licence_id: "<script>alert(1)</script>".to_owned(),
            licence_ip: None,
            tariff_id: 55361,
            service_name: "a&b\"".to_owned(),
            price: Money::from_units(36_000, "EUR").expect("money"),
            period: Months::MONTH,
            autoprolong: true,
            upstream_service_id: None,
            state: OrderState::New,
            attempts: 0,
            last_error: None,
            created_ms: 0,
            updated_ms: 0,
        };
        let html = order_page(&order);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("a&amp;b&quot;"));
        assert!(html.contains("3.6000 EUR"));
        assert!(html.contains("Awaiting payment"));
        let html = error_page("Refused <x>", "bad & worse");
        assert!(html.contains("Refused &lt;x&gt;") && html.contains("bad &amp; worse"));
    }
}
