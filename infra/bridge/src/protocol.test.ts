import assert from 'node:assert/strict';
import { test } from 'node:test';

import { isAllowedOrigin, parseAllowedOrigins, parseHostMessage, PROTOCOL } from './protocol.js';

test('allowed origins are parsed strictly', () => {
  assert.deepEqual(
    parseAllowedOrigins(' http://127.0.0.1:8090, https://app.example.com ,*,null,https://x.example.com/path'),
    ['http://127.0.0.1:8090', 'https://app.example.com']
  );
  assert.deepEqual(parseAllowedOrigins(''), []);
});

test('only exact allowed origins pass', () => {
  const allowed = ['http://127.0.0.1:8090'];
  assert.equal(isAllowedOrigin('http://127.0.0.1:8090', allowed), true);
  for (const origin of [
    'http://127.0.0.1:8091',
    'http://localhost:8090',
    'https://127.0.0.1:8090',
    'http://127.0.0.1:8090.evil.example',
    'null',
    ''
  ]) {
    assert.equal(isAllowedOrigin(origin, allowed), false, origin);
  }
  assert.equal(isAllowedOrigin('null', ['null']), false);
});

test('reload requests are validated like saves', () => {
  assert.deepEqual(parseHostMessage({ protocol: PROTOCOL, type: 'reload', requestId: 'r-2' }), {
    protocol: PROTOCOL,
    type: 'reload',
    requestId: 'r-2'
  });
  assert.equal(parseHostMessage({ protocol: PROTOCOL, type: 'reload' }), null);
  assert.equal(parseHostMessage({ protocol: PROTOCOL, type: 'revert', requestId: 'a' }), null);
});

test('save requests are validated', () => {
  assert.deepEqual(parseHostMessage({ protocol: PROTOCOL, type: 'save', requestId: 'a-1' }), {
    protocol: PROTOCOL,
    type: 'save',
    requestId: 'a-1'
  });
  for (const bad of [
    null,
    'save',
    42,
    { type: 'save', requestId: 'a' },
    { protocol: 'nbembed.v0', type: 'save', requestId: 'a' },
    { protocol: PROTOCOL, type: 'execute', requestId: 'a' },
    { protocol: PROTOCOL, type: 'save' },
    { protocol: PROTOCOL, type: 'save', requestId: 7 },
    { protocol: PROTOCOL, type: 'save', requestId: '<script>' },
    { protocol: PROTOCOL, type: 'save', requestId: 'x'.repeat(65) }
  ]) {
    assert.equal(parseHostMessage(bad), null, JSON.stringify(bad));
  }
});
