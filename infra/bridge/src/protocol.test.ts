import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  isAllowedOrigin,
  kernelSettled,
  kernelStatus,
  parseAllowedOrigins,
  parseHostMessage,
  PROTOCOL,
  SaveLedger
} from './protocol.js';

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

test('the kernel status a host sees, from JupyterLab\'s display status', () => {
  assert.equal(kernelStatus('idle', true), 'idle');
  assert.equal(kernelStatus('busy', true), 'busy');
  for (const starting of ['starting', 'restarting', 'autorestarting', 'initializing', 'connecting']) {
    assert.equal(kernelStatus(starting, true), 'starting', starting);
    assert.equal(kernelStatus(starting, false), 'starting', starting);
  }
  for (const dead of ['dead', 'terminating', 'disconnected']) {
    assert.equal(kernelStatus(dead, true), 'dead', dead);
  }
  // Connected, no status heard yet: still starting; no kernel at all: none runs code.
  assert.equal(kernelStatus('unknown', true), 'starting');
  assert.equal(kernelStatus('unknown', false), 'dead');
  assert.equal(kernelStatus('', false), 'dead');
});

test('ready waits for an idle kernel, or none that will come', () => {
  assert.equal(kernelSettled('starting'), false);
  assert.equal(kernelSettled('busy'), false); // answering the page's kernel_info at connect
  assert.equal(kernelSettled('idle'), true);
  assert.equal(kernelSettled('dead'), true);
});

test('a save of Jupyter\'s own is told as such', () => {
  const ledger = new SaveLedger();
  assert.equal(ledger.completed('t1'), 't1');
  assert.equal(ledger.completed('t2'), 't2');
});

test('a host save claims its completion, which is not told twice', () => {
  const ledger = new SaveLedger();
  ledger.hostSaveStarted('r1');
  assert.equal(ledger.completed('t1'), null);
  assert.equal(ledger.hostSaveEnded('r1'), 't1');
  assert.equal(ledger.hostSaveEnded('r1'), null); // forgotten
  assert.equal(ledger.completed('t2'), 't2'); // the next one is Jupyter's own
});

test('a Ctrl-S during a host save: each timestamp is told exactly once', () => {
  const ledger = new SaveLedger();
  ledger.hostSaveStarted('r1');
  const told = [ledger.completed('t1'), ledger.completed('t2')];
  const replied = ledger.hostSaveEnded('r1');
  const all = [...told.filter(t => t !== null), replied];
  assert.deepEqual(all.sort(), ['t1', 't2']);
});

test('two host saves claim completions in order; a failed one hands its claim back', () => {
  const ledger = new SaveLedger();
  ledger.hostSaveStarted('r1');
  ledger.hostSaveStarted('r2');
  assert.equal(ledger.completed('t1'), null);
  assert.equal(ledger.hostSaveEnded('r2'), null); // failed, claimed nothing
  assert.equal(ledger.hostSaveEnded('r1'), 't1');
  ledger.hostSaveStarted('r3');
  assert.equal(ledger.completed('t3'), null);
  assert.equal(ledger.hostSaveEnded('r3'), 't3'); // failed after a completion: told by the caller
});
