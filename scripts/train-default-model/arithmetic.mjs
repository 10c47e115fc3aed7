// Multi-digit addition and subtraction: the question, the step-by-step column reasoning that goes
// inside <think>, and the final answer. The reasoning names each column (Ones, Tens, ...) so that the
// model can find the digits it needs by content, then lists the result digits from left to right
// before writing the number, which keeps every step a short lookup for a tiny model.
import { fnv1a } from './rng.mjs';

const COLUMNS = ['Ones', 'Tens', 'Hundreds', 'Thousands', 'Ten-thousands'];

/** True for the problems reserved for evaluation (about 1 in 8, fixed by the problem itself). */
export function isHeldOutProblem(a, op, b) {
  return fnv1a(`${a}${op}${b}`) % 8 === 0;
}

export function randomOperand(rng, digits) {
  return digits === 1 ? rng.int(0, 9) : rng.int(10 ** (digits - 1), 10 ** digits - 1);
}

function digitsOf(n, width) {
  return String(n).padStart(width, '0').split('').map(Number).reverse(); // ones first
}

function addSteps(a, b) {
  const width = Math.max(String(a).length, String(b).length);
  const da = digitsOf(a, width);
  const db = digitsOf(b, width);
  const lines = [];
  const out = [];
  let carry = 0;
  for (let i = 0; i < width; i++) {
    const s = da[i] + db[i] + carry;
    out.push(s % 10);
    lines.push(`${COLUMNS[i]}: ${da[i]} + ${db[i]} + ${carry} = ${s}, write ${s % 10}, carry ${Math.floor(s / 10)}.`);
    carry = Math.floor(s / 10);
  }
  if (carry) {
    out.push(carry);
    lines.push(`${COLUMNS[width]}: write the carry ${carry}.`);
  }
  return { lines, digits: out.reverse() };
}

function subSteps(a, b) {
  // a >= b
  const width = String(a).length;
  const da = digitsOf(a, width);
  const db = digitsOf(b, width);
  const lines = [];
  const out = [];
  let borrow = 0;
  for (let i = 0; i < width; i++) {
    let d = da[i] - db[i] - borrow;
    if (d < 0) {
      lines.push(`${COLUMNS[i]}: ${da[i]} - ${db[i]} - ${borrow} is below zero, so borrow: ${da[i] + 10} - ${db[i]} - ${borrow} = ${d + 10}, write ${d + 10}, borrow 1.`);
      d += 10;
      borrow = 1;
    } else {
      lines.push(`${COLUMNS[i]}: ${da[i]} - ${db[i]} - ${borrow} = ${d}, write ${d}, borrow 0.`);
      borrow = 0;
    }
    out.push(d);
  }
  return { lines, digits: out.reverse() };
}

/** Reasoning text for `a op b` (op '+' or '-') and the exact result. */
export function arithmeticReasoning(a, op, b) {
  if (op === '+') {
    const { lines, digits } = addSteps(a, b);
    const width = Math.max(String(a).length, String(b).length);
    return {
      result: a + b,
      reasoning: `I add ${a} and ${b} column by column, lined up as ${String(a).padStart(width, '0')} and ${String(b).padStart(width, '0')}. ` +
        `${lines.join(' ')} The digits from left to right are ${digits.join(' ')}, so ${a} + ${b} = ${a + b}.`,
    };
  }
  if (a >= b) {
    const { lines, digits } = subSteps(a, b);
    const width = String(a).length;
    return {
      result: a - b,
      reasoning: `I subtract ${b} from ${a} column by column, lined up as ${a} and ${String(b).padStart(width, '0')}. ` +
        `${lines.join(' ')} The digits from left to right are ${digits.join(' ')}, so ${a} - ${b} = ${a - b}.`,
    };
  }
  // a < b: compute b - a and negate.
  const { lines, digits } = subSteps(b, a);
  const width = String(b).length;
  return {
    result: a - b,
    reasoning: `${a} is smaller than ${b}, so the result is negative: I compute ${b} - ${a} and put a minus sign in front. ` +
      `Lined up as ${b} and ${String(a).padStart(width, '0')}. ${lines.join(' ')} The digits from left to right are ${digits.join(' ')}, ` +
      `so ${b} - ${a} = ${b - a} and ${a} - ${b} = ${a - b}.`,
  };
}

const ADD_QUESTIONS = [
  (a, b) => `What is ${a} + ${b}?`,
  (a, b) => `What is ${a} plus ${b}?`,
  (a, b) => `Compute ${a} + ${b}.`,
  (a, b) => `${a} + ${b} = ?`,
  (a, b) => `Calculate ${a}+${b}.`,
  (a, b) => `How much is ${a} + ${b}?`,
  (a, b) => `Add ${a} and ${b}.`,
  (a, b) => `What's ${a} + ${b}?`,
];
const SUB_QUESTIONS = [
  (a, b) => `What is ${a} - ${b}?`,
  (a, b) => `What is ${a} minus ${b}?`,
  (a, b) => `Compute ${a} - ${b}.`,
  (a, b) => `${a} - ${b} = ?`,
  (a, b) => `Calculate ${a}-${b}.`,
  (a, b) => `How much is ${a} - ${b}?`,
  (a, b) => `Subtract ${b} from ${a}.`,
  (a, b) => `What's ${a} - ${b}?`,
];

/** One arithmetic problem: the user question, the reasoning, and the answer sentence. */
export function arithmeticProblem(rng, a, op, b) {
  const question = rng.pick(op === '+' ? ADD_QUESTIONS : SUB_QUESTIONS)(a, b);
  const { result, reasoning } = arithmeticReasoning(a, op, b);
  return { question, reasoning, answer: `${a} ${op} ${b} = ${result}.`, result };
}
