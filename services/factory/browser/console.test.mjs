// The web console in a real browser: Debian's headless Chromium, driven by playwright-core,
// against a running `factory up` (run.sh starts it). Each step acts as an operator would and
// checks what the page shows against the API; a screenshot of each page goes to $SHOTS.
import { chromium } from "playwright-core";
import { connect, headers } from "nats";
import assert from "node:assert/strict";

const base = process.env.FACTORY_URL;
const shots = process.env.SHOTS;
const api = async (path, body) => {
  const response = await fetch(base + path, body === undefined ? {} : {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json().catch(() => null) };
};
const until = async (what, check, seconds = 30) => {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const outside = [];
page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("data:")) outside.push(r.url()); });
const errors = [];
page.on("pageerror", (e) => errors.push(e.message));
const shot = (name) => page.screenshot({ path: `${shots}/console-${name}.png`, fullPage: true });
let step = "start";
try {
  // 1. The overview loads with every service up.
  step = "overview";
  const status = (await api("/status")).body;
  await page.goto(`${base}/console#/overview`);
  await page.getByText("every service answers").waitFor();
  for (const service of Object.keys(status.services)) {
    await page.getByRole("cell", { name: service, exact: true }).first().waitFor();
  }
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content", "the first Tab reaches the skip link");
  await page.keyboard.press("Enter");
  assert.equal(await page.evaluate(() => document.activeElement.id), "main", "the skip link moves focus to the content");
  await page.evaluate(() => document.activeElement.blur());
  await until("the command rate chart", async () => (await page.locator("svg.spark").count()) === 2);

  // 2. A failing order sent from the API shows failed, with its reason, on the command page.
  step = "command";
  await api("/v1/commands/product/widget/define", { name: "Widget", bom: [{ sku: "bolt", qty: 4 }] });
  await api("/v1/commands/order/o-fail/plan", { product_id: "widget", qty: 2, warehouse: "main" });
  const started = await api("/v1/commands/order/o-fail/start", {});
  assert.equal(started.status, 202);
  const commandId = started.body.command_id;
  await until("the start to fail", async () => (await api(`/v1/commands/${commandId}`)).body?.status === "failed");
  await page.goto(`${base}/console#/commands/${commandId}`);
  await page.locator("#command-status").getByText("failed").waitFor();
  await page.locator("code.reason", { hasText: "insufficient_stock" }).waitFor();
  await page.getByRole("cell", { name: "stock", exact: true }).waitFor();
  await shot("command");
  await page.goto(`${base}/console#/overview`);
  await page.getByText("every service answers").waitFor();
  await shot("overview");

  // 2b. The live tail shows a command's event as it is stored.
  step = "tail";
  await page.goto(`${base}/console#/commands`);
  await page.getByText("Live tail: every event as it is stored").waitFor();
  // (the tail starts once its consumer exists, which the page cannot see: receipts keep coming until it shows one)
  await until("the tail to show a receipt", async () => {
    await api("/v1/commands/stock/tail@main/receive", { qty: 3 });
    return (await page.locator(".tail-type", { hasText: "factory.stock.StockReceived" }).count()) > 0;
  });
  await page.getByRole("link", { name: "stock tail@main" }).first().waitFor();
  await shot("tail");

  // 3. An aggregate's history, its state at a version, and a difference.
  step = "aggregate";
  await page.goto(`${base}/console#/aggregates/order/o-fail`);
  await page.getByText(/History \(\d+ events, CloudEvents\)/).waitFor();
  await page.getByRole("cell", { name: "factory.order.OrderFailed" }).waitFor();
  await page.locator("#version").fill("1");
  await page.getByText("State at version 1").waitFor();
  await page.getByRole("cell", { name: "status", exact: true }).waitFor();
  const now = new Date(Date.now() + 1000 - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 19);
  // Chromium shows a whole minute as HH:MM, and Playwright refuses a value the input shows
  // otherwise ("Malformed value"): at :00 seconds, fill in the minute as the browser writes it.
  await page.locator("#at-time").fill(now.endsWith(":00") ? now.slice(0, 16) : now);
  await page.getByRole("button", { name: "Show" }).nth(1).click();
  await page.getByText(/State at .*: version 3/).waitFor();
  await until("the ids of the type to be suggested", async () =>
    (await page.locator("#agg-ids option").evaluateAll((options) => options.map((o) => o.value))).includes("o-fail"));
  await shot("aggregate");

  // 4. A rebuild started from the console completes, and the view matches the store.
  step = "rebuild";
  await api("/v1/commands/stock/bolt@main/receive", { qty: 7 });
  await page.goto(`${base}/console#/views/stock`);
  const before = (await api("/v1/projections")).body.views.find((v) => v.view === "stock").version;
  await page.getByRole("button", { name: "Rebuild stock" }).click();
  await page.getByText(/rebuild of stock:/).waitFor();
  await until("the rebuilt version to answer", async () => {
    const stock = (await api("/v1/projections")).body.views.find((v) => v.view === "stock");
    return stock.version === before + 1 && !stock.rebuilding;
  }, 60);
  await page.getByRole("cell", { name: "stock", exact: true }).waitFor();
  const doc = (await api("/v1/views/stock/bolt@main")).body;
  const aggregate = (await api("/v1/aggregates/stock/bolt@main")).body;
  assert.equal(doc.on_hand, aggregate.state.on_hand, "the rebuilt view matches the event store");
  await until("the stock view to count its documents", async () =>
    (await api("/v1/projections")).body.views.find((v) => v.view === "stock").documents >= 1);
  await page.getByRole("columnheader", { name: "documents" }).waitFor();
  await page.getByText('"on_hand": 7').waitFor();
  await shot("views");

  // 5. A parked event appears and is retried.
  step = "parked";
  const nc = await connect({ servers: process.env.NATS_URL });
  const h = headers();
  h.set("ce-type", "factory.stock.StockReceived");
  h.set("ce-schemaversion", "2");
  h.set("ce-commandid", "foreign-1");
  await nc.jetstream().publish("evt.stock.bad@main", new TextEncoder().encode('{"qty": "lots"}'), { headers: h });
  await nc.close();
  await page.goto(`${base}/console#/views`);
  const retry = page.getByRole("button", { name: "Retry parked events of stock" });
  await until("the parked event to show", async () => await retry.isEnabled());
  await page.locator(".parked-reason").first().waitFor();
  assert.match(await page.locator(".parked-reason").first().textContent(), /invalid type: string "lots"/, "the reason names what could not be read");
  await shot("parked");
  await retry.click();
  await page.getByText(/retry of stock:/).waitFor();

  // 6. Logs, and a narrow window.
  step = "logs";
  await page.goto(`${base}/console#/logs`);
  await page.getByRole("button", { name: "Show" }).click();
  await page.getByRole("columnheader", { name: "message" }).waitFor();
  await shot("logs");
  await page.setViewportSize({ width: 420, height: 900 });
  await page.goto(`${base}/console#/overview`);
  await page.getByText("every service answers").waitFor();
  await shot("narrow");

  assert.deepEqual(outside, [], "the console asked nothing of another origin");
  assert.deepEqual(errors, [], "no script error");
  console.log("console: overview, command, aggregate, rebuild, parked and logs checked in headless Chromium");
} catch (error) {
  await page.screenshot({ path: `${shots}/console-failed-${step}.png`, fullPage: true }).catch(() => {});
  console.error(`console check failed at ${step}: ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
