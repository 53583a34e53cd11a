// Signed file URLs in a real browser (Debian's chromium, driven by puppeteer-core): a page from
// another origin shows an <img> and downloads through <a download>, neither of which can send a
// bearer token.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';
import t from 'tap';
import { PDF, pngOfAtLeast, stack, type Stack } from '../helpers/binary-stack.js';
import { eventually } from '../helpers/poll.js';
import { fileUrl, signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';

const CHROMIUM = process.env['CHROMIUM'] ?? '/usr/bin/chromium';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function binary(s: Stack, body: Buffer, type: string): Promise<string> {
  const r = await fetch(`${s.gw.base}/Binary`, { method: 'POST', headers: { ...s.auth, 'content-type': type }, body });
  await r.arrayBuffer();
  if (r.status !== 201) throw new Error(`upload: ${r.status}`);
  return (r.headers.get('location') ?? '').split('/')[5];
}

t.test('a page on another origin shows a signed <img> and downloads a signed <a download>', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-browser-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const s = await stack(t, { signedUrls: signedUrlsConfig(urlKeys(t)) });
  const png = pngOfAtLeast(100_000);
  const pdf = PDF(120_000);
  const imgUrl = await fileUrl(s, `Binary/${await binary(s, png, 'image/png')}/$file-url?disposition=inline`);
  // A name with an accent and Japanese: sent as RFC 8187's filename*, which the browser saves by.
  const pdfUrl = await fileUrl(
    s,
    `Binary/${await binary(s, pdf, 'application/pdf')}/$file-url?filename=${encodeURIComponent('Befund Müller 検査.pdf')}`,
  );
  const unsigned = imgUrl.replace(/&sig=.*/, '&sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');

  const page = `<!doctype html><html><body>
    <img id="ok" src="${imgUrl}">
    <img id="forged" src="${unsigned}">
    <a id="dl" download href="${pdfUrl}">report</a>
  </body></html>`;
  const site = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(page));
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => site.close(() => resolve())));

  const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  t.teardown(() => browser.close());
  const downloads = join(dir, 'downloads');
  mkdirSync(downloads);
  const tab = await browser.newPage();
  const cdp = await tab.createCDPSession();
  // Chromium reserves the final name with an empty file while the bytes go to a .crdownload, so
  // the file is read only after the browser reports the download completed.
  const completed = new Promise<string>((resolve) => {
    cdp.on('Browser.downloadProgress', (e) => {
      if (e.state !== 'inProgress') resolve(e.state);
    });
  });
  await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads, eventsEnabled: true });
  await tab.goto(`http://127.0.0.1:${(site.address() as AddressInfo).port}/`, { waitUntil: 'load' });

  const shown = await tab.$eval('#ok', (img) => ({ complete: img.complete, width: img.naturalWidth, height: img.naturalHeight }));
  t.same(shown, { complete: true, width: 1024, height: Math.ceil(100_000 / (1 + 3 * 1024)) }, 'the image decoded at its size');
  t.equal(await tab.$eval('#forged', (img) => img.naturalWidth), 0, 'a forged signature shows nothing');

  await tab.click('#dl');
  const state = await Promise.race([completed, new Promise<string>((resolve) => setTimeout(() => resolve('timeout'), 15_000).unref())]);
  t.equal(state, 'completed', 'the browser finished the download');
  const file = await eventually(
    () => readdirSync(downloads, { withFileTypes: true }).find((f) => f.isFile() && !f.name.endsWith('.crdownload')),
    'the download',
    15_000,
  ).catch(() => undefined);
  t.ok(file, 'a file was downloaded');
  if (file) {
    t.equal(file.name, 'Befund Müller 検査.pdf', "named by the pinned Content-Disposition's filename*");
    t.equal(sha256(readFileSync(join(downloads, file.name))), sha256(pdf), 'the identical bytes');
  }
});
