import { Transform, type TransformCallback } from 'node:stream';
import { fileTypeFromBuffer } from 'file-type';
import { GatewayError } from '../errors/catalogue.js';
import { isActiveContent } from './media-type.js';
import { SNIFF_BYTES } from './sniff.js';

/** Types that run as programs where they land: never accepted by an override. */
const EXECUTABLE: ReadonlySet<string> = new Set([
  'application/x-msdownload',
  'application/vnd.microsoft.portable-executable',
  'application/x-elf',
  'application/x-executable',
  'application/x-mach-binary',
  'application/x-sharedlib',
  'application/x-sh',
  'application/x-bat',
  'application/java-archive',
  'application/x-java-applet',
  'application/vnd.android.package-archive',
  'application/wasm',
  'application/x-shockwave-flash',
  'application/x.ms.shortcut',
  'application/x-ms-regedit',
  'application/vnd.ms-htmlhelp',
  'application/java-vm',
  'application/x-xpinstall',
  'application/x-google-chrome-extension',
  'application/x-javascript',
  'text/x-javascript',
  'text/jscript',
  'application/hta',
  'application/x-msi',
  'application/vnd.ms-word.document.macroenabled.12',
  'application/vnd.ms-excel.sheet.macroenabled.12',
  'application/vnd.ms-powerpoint.presentation.macroenabled.12',
]);

/**
 * Text a browser or a shell would run: what WHATWG's sniffer takes for HTML (after any leading
 * whitespace, one of its tags, or a comment), SVG, an XML document holding HTML, SVG or script,
 * a shebang. Read over the whole sniffed head, so padding does not push the markup out of sight.
 */
const ACTIVE_START =
  /^(?:<!doctype\s+html|<html|<head|<script|<iframe|<h1|<div|<font|<table|<a|<style|<title|<b|<body|<br|<p|<svg)(?=[\s>/]|$)|^<!--|^#!/i;
const XML_WITH_ACTIVE = /^<\?xml[\s\S]*?<(?:svg|html|script|[a-z]+:script)\b/i;
const BOMS = /^(?:\uFEFF|\u00EF\u00BB\u00BF|\u00FE\u00FF|\u00FF\u00FE)/;

function activeText(head: Buffer): boolean {
  // latin1 keeps one character per byte; UTF-16 text (a BOM FE FF / FF FE) is read without its NULs.
  let text = head.toString('latin1');
  if (/^(?:\u00FE\u00FF|\u00FF\u00FE)/.test(text)) text = text.replace(/\u0000/g, '');
  text = text.replace(BOMS, '').replace(/^[\t\n\f\r ]+/, '');
  return ACTIVE_START.test(text) || XML_WITH_ACTIVE.test(text);
}

/** Whether `type` may be asked for by fileTypeOverride at all. */
export function overridable(type: string): boolean {
  return !isActiveContent(type) && !EXECUTABLE.has(type) && type !== 'application/octet-stream';
}

/**
 * For uploads whose type an override took past the allow-list (GraphQL `fileTypeOverride`): the
 * first bytes are sniffed, and content the sniffer knows as executable, or text a browser would
 * run as a page or script, is refused whatever was declared. Everything passes through unchanged;
 * ContentCheck still holds the content to the declared type.
 */
export class OverrideGuard extends Transform {
  private head: Buffer[] = [];
  private bytes = 0;
  private decided = false;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.decided) {
      cb(null, chunk);
      return;
    }
    this.head.push(chunk);
    this.bytes += chunk.length;
    if (this.bytes < SNIFF_BYTES) {
      cb();
      return;
    }
    void this.decide(cb);
  }

  override _flush(cb: TransformCallback): void {
    if (this.decided) {
      cb();
      return;
    }
    void this.decide(cb);
  }

  private async decide(cb: TransformCallback): Promise<void> {
    this.decided = true;
    const head = Buffer.concat(this.head);
    this.head = [];
    const found = await fileTypeFromBuffer(head.subarray(0, SNIFF_BYTES)).catch(() => undefined);
    if ((found && (EXECUTABLE.has(found.mime) || isActiveContent(found.mime))) || activeText(head.subarray(0, SNIFF_BYTES))) {
      cb(new GatewayError('UNSUPPORTED_MEDIA', 'fileTypeOverride never takes executable or active content (programs, HTML, SVG, scripts)'));
      return;
    }
    cb(null, head);
  }
}
