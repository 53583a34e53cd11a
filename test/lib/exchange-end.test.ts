import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import t from 'tap';
import { exchangeEnded, onExchangeEnd } from '../../src/lib/exchange-end.js';

t.test('every registered listener runs once when the response closes, in registration order, through one close listener', async (t) => {
  const res = new EventEmitter() as unknown as ServerResponse;
  const calls: string[] = [];
  onExchangeEnd(res, (r, arg: string) => calls.push(`a:${arg}:${r === res}`), 'one');
  onExchangeEnd(res, (_r, arg: number) => calls.push(`b:${arg}`), 2);
  onExchangeEnd(res, (_r, arg: { n: number }) => calls.push(`c:${arg.n}`), { n: 3 });
  t.equal(res.listenerCount('close'), 1, 'one listener on the response, however many parts wait for the end');
  t.same(calls, [], 'nothing before the close');
  res.emit('close');
  t.same(calls, ['a:one:true', 'b:2', 'c:3']);
});

t.test('responses do not share registrations', async (t) => {
  const a = new EventEmitter() as unknown as ServerResponse;
  const b = new EventEmitter() as unknown as ServerResponse;
  const calls: string[] = [];
  onExchangeEnd(a, (_r, x: string) => calls.push(x), 'a1');
  onExchangeEnd(b, (_r, x: string) => calls.push(x), 'b1');
  onExchangeEnd(a, (_r, x: string) => calls.push(x), 'a2');
  b.emit('close');
  t.same(calls, ['b1']);
  a.emit('close');
  t.same(calls, ['b1', 'a1', 'a2']);
});

t.test('an exchange ends once; a part that registers after the end hears it at once', async (t) => {
  const res = Object.assign(new EventEmitter(), { destroyed: false }) as unknown as ServerResponse;
  const calls: string[] = [];
  onExchangeEnd(res, (_r, x: string) => calls.push(x), 'first');
  t.notOk(exchangeEnded(res));
  res.emit('close');
  res.emit('close');
  t.same(calls, ['first'], 'not twice');
  t.ok(exchangeEnded(res));
  onExchangeEnd(res, (_r, x: string) => calls.push(x), 'late');
  t.same(calls, ['first', 'late']);
});

t.test('a queued (pipelined) response with no socket ends on its request closing, once', async (t) => {
  const req = new EventEmitter();
  const res = Object.assign(new EventEmitter(), { socket: null, req, destroyed: false }) as unknown as ServerResponse;
  const calls: string[] = [];
  onExchangeEnd(res, (_r, x: string) => calls.push(x), 'a');
  t.equal(req.listenerCount('close'), 1);
  req.emit('close');
  res.emit('close');
  t.same(calls, ['a']);
  t.ok(exchangeEnded(res));
});
