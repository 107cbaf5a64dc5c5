import { describe, expect, it } from 'vitest';
import { cleanConsoleText, decodeBase64Utf8, encodeBase64Utf8 } from './encoding';

describe('base64', () => {
  it('encodes UTF-8, not Latin-1', () => {
    expect(encodeBase64Utf8('#!/bin/sh\necho héllo\n')).toBe(Buffer.from('#!/bin/sh\necho héllo\n', 'utf8').toString('base64'));
  });

  it('round-trips large and non-ASCII text', () => {
    const text = 'λ '.repeat(50000) + '🔥';
    expect(decodeBase64Utf8(encodeBase64Utf8(text))).toBe(text);
  });

  it('decodes with line breaks and tolerates missing output', () => {
    expect(decodeBase64Utf8('a2lsbi10aW55\nOiByZWFkeQ==')).toBe('kiln-tiny: ready');
    expect(decodeBase64Utf8(undefined)).toBe('');
  });
});

describe('cleanConsoleText', () => {
  it('drops escape sequences and normalises newlines', () => {
    expect(cleanConsoleText('\x1b[0;32mOK\x1b[0m boot\r\nkiln-tiny: ready\r\n')).toBe('OK boot\nkiln-tiny: ready\n');
  });
});
