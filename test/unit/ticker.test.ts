import assert from 'node:assert/strict';
import { test } from 'node:test';
import { activePeriods, every } from '../../src/ticker';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('tasks of one period run together on one timer, which goes with the last of them', async () => {
  const runs: string[] = [];
  const stopA = every(30, () => runs.push('a'));
  const stopB = every(30, () => runs.push('b'));
  const stopC = every(45, () => runs.push('c'));
  assert.deepEqual(activePeriods(), [30, 45]);
  await sleep(100);
  // a and b always in pairs, in the order they were added
  const ab = runs.filter((r) => r !== 'c');
  assert.ok(ab.length >= 4, runs.join(''));
  for (let i = 0; i < ab.length; i += 2) assert.deepEqual(ab.slice(i, i + 2), ['a', 'b'], runs.join(''));
  assert.ok(runs.includes('c'));
  stopA();
  assert.deepEqual(activePeriods(), [30, 45]);
  runs.length = 0;
  await sleep(70);
  assert.ok(runs.includes('b') && !runs.includes('a'), runs.join(''));
  stopB();
  stopB(); // twice: no effect
  stopC();
  assert.deepEqual(activePeriods(), []);
  runs.length = 0;
  await sleep(70);
  assert.deepEqual(runs, []);
});

test('the same function added twice runs twice', async () => {
  let count = 0;
  const task = () => count++;
  const stops = [every(20, task), every(20, task)];
  await sleep(50);
  for (const stop of stops) stop();
  assert.ok(count >= 2 && count % 2 === 0, String(count));
  assert.deepEqual(activePeriods(), []);
});
