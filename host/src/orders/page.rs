//! The host's own pages for the end user's browser: the order page a Buy redirect leads to when
//! no checkout URL is configured, and the page that explains a refused redirect. Plain HTML,
//! every value escaped, no script and nothing loaded from elsewhere.

use quick_xml::escape::escape;

use super::{Order, OrderState};
use crate::money::{Money, Months};

/// A module's order field as the order page asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormField {
    /// Its name (the form's input name).
    pub name: String,
    /// What the buyer is asked.
    pub label: String,
    /// The value given so far.
    pub value: String,
    /// Whether the order waits for it.
    pub required: bool,
}

/// What the order page lets the buyer change: the period (with its price) while unpaid, and
/// the module's order fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderForm {
    /// The periods sold, with their prices.
    pub periods: Vec<(Months, Money)>,
    /// The module's order fields.
    pub fields: Vec<FormField>,
}

/// The order page: what was ordered, for which licence, at what price, and where it stands;
/// with `form`, the choices left to the buyer, and `problem` when their last answer was refused.
pub fn order_page(order: &Order, form: Option<&OrderForm>, problem: Option<&str>) -> String {
    let state = match order.state {
        OrderState::New => "Awaiting payment",
        OrderState::Paid if order.waiting.is_some() => {
            "Paid; we need the details below (or our staff are completing the order)"
        }
        OrderState::Paid | OrderState::Placing => "Paid; the module is being ordered",
        OrderState::Placed => {
            "Ordered. The panel shows the module after its next licence refresh \
             (about daily, or at once with “Update license information”)."
        }
        OrderState::Suspended => "Suspended",
        OrderState::Failed | OrderState::InDoubt => "Paid; our staff are completing the order",
        OrderState::Cancelled => "Cancelled",
        OrderState::Removed => "Removed",
    };
    let ip = order
        .licence_ip
        .map(|ip| format!("<tr><th>Licence IP</th><td>{ip}</td></tr>"))
        .unwrap_or_default();
    let expires = order
        .expires_on
        .map(|d| format!("<tr><th>Paid until</th><td>{d}</td></tr>"))
        .unwrap_or_default();
    let problem = problem
        .map(|p| format!("<p role=\"alert\"><strong>{}</strong></p>\n", escape(p)))
        .unwrap_or_default();
    let form = form.map(form_html).unwrap_or_default();
    page(
        "Your order",
        &format!(
            "<h1>Order {id}</h1>\n<table>\n\
             <tr><th>Module</th><td>{module} (tariff {tariff})</td></tr>\n\
             <tr><th>Licence</th><td>{licence}</td></tr>\n{ip}\n\
             <tr><th>Period</th><td>{months}</td></tr>\n\
             <tr><th>Price</th><td>{price}</td></tr>\n{expires}\
             <tr><th>Status</th><td>{state}</td></tr>\n</table>\n{problem}{form}\
             <p>Quote the order number when you pay or contact us.</p>",
            id = escape(order.id.as_str()),
            module = escape(&order.service_name),
            tariff = order.tariff_id,
            licence = escape(&order.licence_id),
            months = months_text(order.period),
            price = escape(order.price.to_string()),
        ),
    )
}

fn months_text(months: Months) -> String {
    if months == Months::MONTH {
        "1 month".to_owned()
    } else {
        format!("{months} months")
    }
}

/// The form of the order page: a plain form that posts back to the page.
fn form_html(form: &OrderForm) -> String {
    let mut out = String::from("<form method=\"post\">\n");
    if form.periods.len() > 1 {
        out.push_str("<p><label>Period <select name=\"period\">");
        for (months, price) in &form.periods {
            out.push_str(&format!(
                "<option value=\"{m}\">{text} — {price}</option>",
                m = months.get(),
                text = months_text(*months),
                price = escape(price.to_string()),
            ));
        }
        out.push_str("</select></label></p>\n");
    }
    for field in &form.fields {
        out.push_str(&format!(
            "<p><label>{label}{star} <input name=\"{name}\" value=\"{value}\"{required}></label></p>\n",
            label = escape(&field.label),
            star = if field.required { " *" } else { "" },
            name = escape(&field.name),
            value = escape(&field.value),
            required = if field.required { " required" } else { "" },
        ));
    }
    out.push_str("<p><button type=\"submit\">Save</button></p>\n</form>\n");
    out
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
            module: None,
            fields: super::super::OrderFields::new(),
            expires_on: None,
            upstream_status: None,
            waiting: None,
        };
        let html = order_page(&order, None, None);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("a&amp;b&quot;"));
        assert!(html.contains("3.6000 EUR"));
        assert!(html.contains("Awaiting payment"));
        let form = OrderForm {
            periods: vec![
                (
                    Months::MONTH,
                    Money::from_units(36_000, "EUR").expect("money"),
                ),
                (
                    Months::YEAR,
                    Money::from_units(360_000, "EUR").expect("money"),
                ),
            ],
            fields: vec![FormField {
                name: "bitninja_email".to_owned(),
                label: "Email <for> alerts".to_owned(),
                value: "\"><script>".to_owned(),
                required: true,
            }],
        };
        let html = order_page(&order, Some(&form), Some("bad <value>"));
        assert!(
            !html.contains("<script>") && !html.contains("<for>"),
            "{html}"
        );
        assert!(html.contains("bad &lt;value&gt;"));
        assert!(
            html.contains("<option value=\"12\">12 months — 36.0000 EUR</option>"),
            "{html}"
        );
        assert!(
            html.contains("name=\"bitninja_email\" value=\"&quot;&gt;&lt;script&gt;\" required"),
            "{html}"
        );
        let html = error_page("Refused <x>", "bad & worse");
        assert!(html.contains("Refused &lt;x&gt;") && html.contains("bad &amp; worse"));
    }
}
