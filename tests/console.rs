//! The operator console in a real browser: headless Chromium driven over WebDriver
//! (`chromedriver`), against the real server and the upstream simulator. Sign in, find the
//! in-doubt order, settle it, see it placed, sign out; and the refusals: no session, no CSRF
//! token.
//!
//! Needs `chromium` and `chromedriver` (Debian: `chromium`, `chromium-driver`; `.ci/run`
//! installs them). Without them the test says it is skipped and why — except under `CI=true`,
//! where that is a failure. With `RESELLER_SCREENSHOTS=DIR` it saves the main pages there.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use upstream_sim::{Fault, FaultSpec};

use crate::orders::{Api, PLACE, Setup, TOKEN, order_for};

/// `chromedriver` on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn program(env: &str, names: &[&str]) -> Option<String> {
    if let Ok(path) = std::env::var(env) {
        return Some(path);
    }
    names.iter().find_map(|n| {
        let out = Command::new("sh")
            .args(["-c", &format!("command -v {n}")])
            .output()
            .ok()?;
        let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !path.is_empty()).then_some(path)
    })
}

/// The driver and the browser to drive, or why there are none.
fn browser() -> Result<(Driver, String), String> {
    let driver = program("CHROMEDRIVER", &["chromedriver"])
        .ok_or("chromedriver is not installed (Debian: chromium-driver)")?;
    let chromium = program(
        "CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    )
    .ok_or("chromium is not installed")?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{driver}: {e}"))?;
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("chromedriver did not start".to_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((Driver { child, url }, chromium))
}

async fn connect(driver: &str, chromium: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a browser session")
}

/// The text of the first element `css` matches once it contains `want`: a click that submits a
/// form returns before the next page has loaded, so the page is asked again until it shows
/// what the action leads to (up to 20 s).
async fn text_once(client: &Client, css: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = match client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(want) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn shot(client: &Client, name: &str) {
    let Some(dir) = std::env::var_os("RESELLER_SCREENSHOTS") else {
        return;
    };
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(std::path::Path::new(&dir).join(name), png).expect("save screenshot");
}

#[test]
fn an_operator_settles_an_in_doubt_order_in_the_browser() {
    let (driver, chromium) = match browser() {
        Ok(found) => found,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("the browser test cannot run: {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    // An order whose answer was a login page: in doubt, though upstream has it.
    let setup = Setup::new();
    let server = setup.start(&setup.config(""));
    let api = Api::new(&server);
    setup
        .sim
        .sim()
        .arm(FaultSpec::new(Fault::Login).on(PLACE).applied())
        .expect("armed");
    let id = order_for(&server, "184431", "drweb-lite", 55361);
    api.paid(&id);
    assert_eq!(api.settled(&id)["order"]["state"], "in_doubt");
    let service = setup.sim.sim().services()[0].id.to_string();
    let base = server.url("/console");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = rt.block_on(connect(&driver.url, &chromium));
    let cookie = rt.block_on(async {
        // Not signed in: the console sends the browser to the sign-in page.
        client.goto(&format!("{base}/orders")).await.expect("goto");
        assert!(
            client
                .current_url()
                .await
                .expect("url")
                .path()
                .ends_with("/console/signin")
        );
        shot(&client, "console-signin.png").await;
        let secret = client
            .find(Locator::Css("input[name=secret]"))
            .await
            .expect("field");
        secret.send_keys("not the token").await.expect("type");
        client
            .find(Locator::Css("form button"))
            .await
            .expect("button")
            .click()
            .await
            .expect("submit");
        let body = text_once(&client, "body", "not the token or the password").await;
        assert!(body.contains("not the token or the password"), "{body}");
        let secret = client
            .find(Locator::Css("input[name=secret]"))
            .await
            .expect("field");
        secret.send_keys(TOKEN).await.expect("type");
        client
            .find(Locator::Css("form button"))
            .await
            .expect("button")
            .click()
            .await
            .expect("submit");

        // Signed in: the in-doubt order stands out, on every page.
        assert_eq!(
            text_once(&client, "p.doubt a", "in doubt").await,
            "1 in doubt"
        );
        let banner = client
            .find(Locator::Css("p.doubt a"))
            .await
            .expect("the in-doubt banner");
        shot(&client, "console-orders.png").await;
        banner.click().await.expect("follow");
        client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::LinkText(&id))
            .await
            .expect("the order in the in-doubt list")
            .click()
            .await
            .expect("open");
        let page = text_once(&client, "main", "In doubt.").await;
        assert!(page.contains("In doubt."), "{page}");
        assert!(
            page.contains("addition.order.param"),
            "the request sent is shown: {page}"
        );
        shot(&client, "console-order-in-doubt.png").await;

        // Found upstream: record the service ID, confirmed.
        let form = client
            .find(Locator::Css(&format!(
                "form[action$='/orders/{id}/placed']"
            )))
            .await
            .expect("the found-upstream form");
        form.find(Locator::Css("input[name=service_id]"))
            .await
            .expect("field")
            .send_keys(&service)
            .await
            .expect("type");
        form.find(Locator::Css("input[name=confirm]"))
            .await
            .expect("box")
            .click()
            .await
            .expect("tick");
        form.find(Locator::Css("button"))
            .await
            .expect("button")
            .click()
            .await
            .expect("submit");
        assert_eq!(text_once(&client, "h1 .state", "placed").await, "placed");
        let notice = client.find(Locator::Css(".notice")).await.expect("notice");
        assert!(notice.text().await.expect("text").contains("placed"));
        assert!(
            client.find(Locator::Css("p.doubt")).await.is_err(),
            "nothing in doubt any more"
        );
        shot(&client, "console-order-placed.png").await;
        client.goto(&format!("{base}/plugin")).await.expect("goto");
        shot(&client, "console-plugin.png").await;
        client.goto(&format!("{base}/prices")).await.expect("goto");
        shot(&client, "console-prices.png").await;
        client.goto(&format!("{base}/events")).await.expect("goto");
        let events = client
            .find(Locator::Css("main"))
            .await
            .expect("main")
            .text()
            .await
            .expect("text");
        assert!(
            events.contains("order.in_doubt") && events.contains("order.placed"),
            "{events}"
        );
        shot(&client, "console-events.png").await;

        let cookie = client
            .get_named_cookie("reseller_console")
            .await
            .expect("the session cookie");
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
        let session = cookie.value().to_owned();

        // Signed out: the session is gone.
        client.goto(&format!("{base}/orders")).await.expect("goto");
        client
            .find(Locator::Css("form.signout button"))
            .await
            .expect("sign out")
            .click()
            .await
            .expect("click");
        // Signing out leads to the sign-in page; wait for it before asking for another page.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !client
            .current_url()
            .await
            .expect("url")
            .path()
            .ends_with("/console/signin")
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        client.goto(&format!("{base}/orders")).await.expect("goto");
        assert!(
            client
                .current_url()
                .await
                .expect("url")
                .path()
                .ends_with("/console/signin")
        );
        client.close().await.expect("close");
        session
    });
    let order = api.order(&id);
    assert_eq!(order["order"]["state"], "placed");
    assert_eq!(order["order"]["upstream_service_id"], service.as_str());
    assert!(
        order["history"]
            .to_string()
            .contains("console (API token holder)")
    );

    // Without a session, and with a session but without the CSRF token: refused.
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let action = format!("{base}/orders/{id}/remove");
    let refused = http.post(&action).body("confirm=yes").send().expect("post");
    assert_eq!(refused.status().as_u16(), 401);
    let refused = http
        .post(&action)
        .header("Cookie", format!("reseller_console={cookie}"))
        .body("confirm=yes")
        .send()
        .expect("post");
    assert_eq!(
        refused.status().as_u16(),
        401,
        "the session ended at sign-out"
    );
    // A live session without the form's token.
    let signin = http
        .post(format!("{base}/signin"))
        .body(format!("secret={TOKEN}"))
        .send()
        .expect("sign in");
    let live = signin
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session")
        .to_owned();
    assert!(
        signin.headers()["set-cookie"]
            .to_str()
            .is_ok_and(|c| c.contains("HttpOnly") && c.contains("SameSite=Strict"))
    );
    let refused = http
        .post(&action)
        .header("Cookie", &live)
        .body("confirm=yes&csrf=forged")
        .send()
        .expect("post");
    assert_eq!(refused.status().as_u16(), 403);
    assert_eq!(api.state(&id), "placed", "nothing happened");
    assert_eq!(setup.count("addition.delete"), 0);
    drop(driver);
}
