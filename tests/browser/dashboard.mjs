// Drives Debian's Chromium through the dashboard sign-in and prints, as one JSON object
// on stdout, the numbers the rendered DOM shows. Used by tests/e2e/dashboard.rs.
//
// usage: FERRY_ADMIN_TOKEN=... node dashboard.mjs <base-url> <screenshot.png> <profile-dir>
// (the token comes from the environment so it never shows in a process list)
import { chromium } from 'playwright-core';

const [base, screenshot, profile] = process.argv.slice(2);
const token = process.env.FERRY_ADMIN_TOKEN;
if (!base || !screenshot || !profile || !token) {
  console.error('usage: FERRY_ADMIN_TOKEN=... node dashboard.mjs <base-url> <screenshot.png> <profile-dir>');
  process.exit(64);
}

const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--no-first-run', '--disable-component-update', '--disable-sync',
  ],
  ignoreHTTPSErrors: true,
  viewport: { width: 1280, height: 900 },
});

try {
  const page = context.pages()[0] ?? (await context.newPage());
  const out = {};

  // Without a session the dashboard sends the browser to the sign-in form.
  await page.goto(`${base}/dashboard`);
  out.before_sign_in_url = new URL(page.url()).pathname;
  out.login_form = (await page.locator('form#login input[name=token]').count()) === 1;

  // A wrong token is refused with an error on the form.
  await page.fill('#token', 'fat_not-a-real-token');
  await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit]')]);
  out.wrong_token_error = (await page.locator('#login-error').count()) === 1;

  await page.fill('#token', token);
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/dashboard'),
    page.click('button[type=submit]'),
  ]);
  await page.waitForSelector('#fleet-nodes');
  out.after_sign_in_url = new URL(page.url()).pathname;
  out.refresh = await page.locator('meta[http-equiv=refresh]').getAttribute('content');

  const num = async (sel) => Number((await page.locator(sel).first().textContent()).trim());
  out.fleet = {};
  for (const f of ['services', 'nodes', 'ok', 'pending', 'stale', 'expiring', 'firing', 'deliveries']) {
    out.fleet[f] = await num(`#fleet-${f}`);
  }
  out.services = await page.$$eval('tr[data-service-row]', (rows) =>
    Object.fromEntries(rows.map((r) => [
      r.dataset.serviceRow,
      Object.fromEntries([...r.querySelectorAll('td[data-field]')].map((td) => [
        td.dataset.field,
        td.dataset.seconds !== undefined ? Number(td.dataset.seconds) : Number(td.textContent.trim()),
      ])),
    ])));
  out.alerts = await page.$$eval('tr[data-alert]', (rows) =>
    rows.map((r) => ({ service: r.dataset.service, node: r.dataset.node, reason: r.dataset.reason })));
  out.deliveries = await page.$$eval('tr[data-delivery]', (rows) =>
    rows.map((r) => ({ service: r.dataset.service, node: r.dataset.node, state: r.dataset.state })));
  out.rotations = await page.$$eval('tr[data-rotation]', (rows) =>
    rows.map((r) => ({
      service: r.dataset.service,
      done: Number(r.querySelector('[data-field=done]').textContent),
      total: Number(r.querySelector('[data-field=total]').textContent),
    })));
  out.cookie = (await context.cookies()).filter((c) => c.name === 'ferry_session')
    .map((c) => ({ httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite, path: c.path }));

  await page.screenshot({ path: screenshot, fullPage: true });

  // Signing out ends the session: the dashboard sends the browser back to sign in.
  await Promise.all([page.waitForURL((u) => u.pathname === '/dashboard/login'), page.click('#logout')]);
  await page.goto(`${base}/dashboard`);
  out.after_sign_out_url = new URL(page.url()).pathname;

  process.stdout.write(JSON.stringify(out) + '\n');
} catch (e) {
  // Say where the browser was, so a failure can be read from the test output.
  const page = context.pages()[0];
  if (page) console.error(`at ${page.url()}:\n${(await page.content()).slice(0, 2000)}`);
  throw e;
} finally {
  await context.close();
}
