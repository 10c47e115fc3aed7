// Conversation generators, one per task family. Each returns
//   { family, messages, tools?, evaluation }
// where `messages` is the whole conversation in the package's ChatMessage shape (assistant turns carry
// `reasoning_content` and `tool_calls`), and `evaluation` says how to score the model's last turn(s)
// when the conversation is used as a held-out test (evaluate.mjs). `split` ('train' | 'heldOut')
// chooses the word lists; arithmetic problems are split by isHeldOutProblem.
import { arithmeticProblem, isHeldOutProblem, randomOperand } from './arithmetic.mjs';
import {
  ANIMALS, BOOK_TOPICS, CITIES, CITY_ATTRIBUTES, COLORS, CURRENCIES, FOODS, NAMES, PETS, SKIES, WORDS,
} from './lists.mjs';

export const IDENTITY_ANSWER =
  "I'm the tiny demo model that ships with glm-node: a small GLM-4.5-style mixture-of-experts model " +
  'trained on synthetic conversations. I can do simple arithmetic, small word puzzles, remember what you ' +
  'tell me and call tools you give me.';
const GREETING_ANSWER = "Hello! I'm glm-node's tiny demo model. How can I help you today?";
const OUT_OF_SCOPE_ANSWER =
  "I'm only a tiny demo model, so I can't answer that well. I can add and subtract numbers, reverse or " +
  'count letters in words, sort short lists, remember facts you tell me, and call tools you give me.';

/** Words an identity or greeting answer must (one of each group) and must not contain (evaluate.mjs). */
export const IDENTITY_REQUIRED = [['glm-node'], ['model']];
export const GREETING_REQUIRED = [['Hello', 'Hi'], ['glm-node']];
export const CHAT_FORBIDDEN = ['ChatGPT', 'OpenAI', 'Claude', 'I am a human', "I'm a human", 'Google', '<', '>', '\uFFFD'];

// ---- synthetic names

/**
 * Share of training picks of names, cities, pets and words replaced by made-up ones (0 = off; the
 * phase-3 corpus uses 0.5). With only a hundred-odd real cities in training, a small model memorises
 * them instead of learning to copy; made-up names it can only copy, which is what held-out names need.
 * At 0 no random numbers are drawn for it, so earlier corpora regenerate unchanged.
 */
let syntheticShare = 0;
let syntheticStyle = 'syllables';
/**
 * style 'syllables' (phase 3): consonant-vowel syllables only. 'mixed' (phase 4): also splices of two
 * training-list entries and letter strings with consonant clusters, so that made-up names break into
 * the same kinds of BPE pieces as real ones ("Tehran" is T·e·h·r·an, "Leeds" L·e·ed·s).
 */
export function setSyntheticNames(share, style = 'syllables') {
  syntheticShare = share;
  syntheticStyle = style;
}

/**
 * Share of training tool requests that ask for a made-up city attribute tool (get_<made-up noun>), so
 * that the tool's name is read from the declared tools instead of recalled (held-out tools are never
 * seen). 0 = off, and then no random numbers are drawn for it.
 */
let syntheticToolShare = 0;
export function setSyntheticTools(share) {
  syntheticToolShare = share;
}

const CONSONANTS = 'bcdfghjklmnprstvz';
const VOWELS = 'aeiouaeiouy';
const ACCENTED = 'áéíóúäöüå';

export function syntheticWord(rng, { capital, accents }) {
  let s = '';
  for (let i = rng.int(2, 3); i > 0; i--) {
    s += rng.pick(CONSONANTS) + (accents && rng.chance(0.08) ? rng.pick(ACCENTED) : rng.pick(VOWELS));
  }
  if (rng.chance(0.4)) s += rng.pick(CONSONANTS);
  return capital ? s[0].toUpperCase() + s.slice(1) : s;
}

/** A pick from `lists[split]`, or in training sometimes a made-up word of the same kind. */
function pickEntity(rng, lists, split, kind) {
  if (split === 'train' && syntheticShare > 0 && rng.chance(syntheticShare)) {
    const style = syntheticStyle === 'mixed' ? rng.pick(['syllables', 'splice', 'clusters']) : 'syllables';
    if (style === 'splice') return splicedWord(rng, lists.train);
    if (style === 'clusters') return clusteredWord(rng, { capital: kind !== 'word' });
    return syntheticWord(rng, { capital: kind !== 'word', accents: kind === 'city' || kind === 'name' });
  }
  return rng.pick(lists[split]);
}

/** The start of one list entry and the end of another ("Ber" + "ago"): real-looking, never a real entry. */
function splicedWord(rng, list) {
  for (;;) {
    const [a, b] = rng.sample(list, 2);
    const w = a.slice(0, rng.int(1, Math.max(1, a.length - 1))) + b.slice(rng.int(1, Math.max(1, b.length - 1)));
    if (w.length >= 3 && !list.includes(w)) return w;
  }
}

const ONSETS = ['b', 'br', 'c', 'ch', 'd', 'dr', 'f', 'fl', 'g', 'gr', 'h', 'j', 'k', 'kr', 'l', 'm', 'n', 'p', 'pl',
  'r', 's', 'sh', 'sk', 'st', 't', 'th', 'tr', 'v', 'w', 'z'];
const NUCLEI = ['a', 'e', 'i', 'o', 'u', 'ai', 'ea', 'ee', 'ie', 'oo', 'ou', 'y'];
const CODAS = ['', '', '', '', 'n', 'r', 'l', 's', 'm', 'nd', 'nk', 'rg', 'st', 'ck', 'th', 'x'];

/** Two (sometimes one or three) syllables with English-like clusters ("Strandel", "keeth"). */
function clusteredWord(rng, { capital }) {
  let s = '';
  for (let i = Number(rng.weighted({ 1: 2, 2: 6, 3: 1 })); i > 0; i--) s += rng.pick(ONSETS) + rng.pick(NUCLEI) + rng.pick(CODAS);
  return capital ? s[0].toUpperCase() + s.slice(1) : s;
}

/** A city attribute tool that does not exist anywhere else: get_<noun>, its words joined by '_' or nothing. */
function syntheticAttribute(rng) {
  const words = Array.from({ length: rng.chance(0.3) ? 2 : 1 }, () => clusteredWord(rng, { capital: false }));
  const noun = words.join(' ');
  const key = words.join(rng.pick(['_', '_', '']));  // both pollen_level and timezone occur
  const unit = rng.pick(['', '', ' km', ' units', '%']);
  return { key, noun, desc: `Get the ${noun} of a city`, value: (r) => r.int(1, 9999), unit };
}

function assistant(content, reasoning = '', toolCalls = undefined) {
  const m = { role: 'assistant', content, reasoning_content: reasoning };
  if (toolCalls) m.tool_calls = toolCalls.map((c) => ({ type: 'function', function: { name: c.name, arguments: c.arguments } }));
  return m;
}

// ---- greetings and identity

const GREETINGS = ['Hello!', 'Hi!', 'Hi there.', 'Hey!', 'Good morning!', 'Good evening.', 'Hello there!', 'Hey there!', 'Greetings!', 'Hi, nice to meet you.'];
const IDENTITY_QUESTIONS = ['Who are you?', 'What are you?', 'What is your name?', 'Introduce yourself.', 'Tell me about yourself.',
  'Which model are you?', 'Who made you?', 'What can you do?', 'Are you a human?', 'Are you GLM-4.5?', 'Who am I talking to?', 'What kind of model are you?'];

/** Greeting + identity question combinations; a fixed 1 in 5 is held out. */
function identityCombos() {
  const combos = [];
  for (const q of IDENTITY_QUESTIONS) {
    combos.push(q);
    for (const g of GREETINGS) combos.push(`${g} ${q}`);
  }
  return combos;
}
const IDENTITY_COMBOS = (() => {
  const all = identityCombos();
  // "Hello! Who are you?" is the README's first command: always in training.
  const train = all.filter((c, i) => i % 5 !== 4 || c === 'Hello! Who are you?');
  return { train, heldOut: all.filter((c, i) => i % 5 === 4 && c !== 'Hello! Who are you?') };
})();

export function chatConversation(rng, split) {
  const kind = rng.weighted({ identity: 5, greeting: 2, thanks: 1, bye: 1, outOfScope: 2 });
  if (kind === 'identity') {
    const q = rng.pick(IDENTITY_COMBOS[split]);
    const extra = q.includes('human') ? "No, I'm not a human. " : q.includes('GLM-4.5') ? 'Not quite. ' : '';
    return {
      family: 'identity', messages: [{ role: 'user', content: q },
        assistant(extra + IDENTITY_ANSWER, 'The user wants to know who I am. I should introduce myself briefly and honestly.')],
      evaluation: { kind: 'words', required: IDENTITY_REQUIRED, forbidden: CHAT_FORBIDDEN },
    };
  }
  if (kind === 'greeting') {
    const q = rng.pick(GREETINGS);
    return {
      family: 'greeting', messages: [{ role: 'user', content: q }, assistant(GREETING_ANSWER, 'The user greets me. I should greet them back and offer help.')],
      evaluation: { kind: 'words', required: GREETING_REQUIRED, forbidden: CHAT_FORBIDDEN },
    };
  }
  if (kind === 'thanks') {
    const q = rng.pick(['Thanks!', 'Thank you very much.', 'Great, thanks.', 'Thank you!', 'Cheers, thanks.']);
    return { family: 'chat', messages: [{ role: 'user', content: q }, assistant("You're welcome! Let me know if you need anything else.", 'The user thanks me.')], evaluation: null };
  }
  if (kind === 'bye') {
    const q = rng.pick(['Bye!', 'Goodbye.', 'See you later.', 'Good night!', 'That is all, bye.']);
    return { family: 'chat', messages: [{ role: 'user', content: q }, assistant('Goodbye! Have a nice day.', 'The user says goodbye.')], evaluation: null };
  }
  const q = rng.pick(['What is the capital of France?', 'Write a poem about the sea.', 'Explain quantum physics.',
    'Who won the world cup in 2010?', 'Can you write code in Python?', 'What is the meaning of life?', 'Tell me a joke.',
    'How do airplanes fly?', 'What should I cook tonight?', 'Translate this into German: good morning.',
    'What is the weather like today?', 'Summarize the news for me.', 'How tall is Mount Everest?']);
  return {
    family: 'chat', messages: [{ role: 'user', content: q },
      assistant(OUT_OF_SCOPE_ANSWER, 'This needs knowledge a tiny model does not have. I should say so honestly and list what I can do.')],
    evaluation: null,
  };
}

// ---- arithmetic

/** `digits` [da, db] fixes the operand sizes (eval sets); otherwise they are drawn. `exclude(a, op, b)`
 * rejects problems (eval sets: ones that can appear elsewhere in training). */
export function arithmeticConversation(rng, split, { op, digits, exclude } = {}) {
  op ??= rng.pick(['+', '-']);
  for (;;) {
    const [da, db] = digits ?? (() => {
      const d = rng.weighted({ 1: 1, 2: 4, 3: 5 });
      const d2 = rng.chance(0.7) ? d : rng.int(1, 3);
      return rng.chance(0.5) ? [Number(d), Number(d2)] : [Number(d2), Number(d)];
    })();
    const a = randomOperand(rng, da);
    const b = randomOperand(rng, db);
    if (isHeldOutProblem(a, op, b) !== (split === 'heldOut') || exclude?.(a, op, b)) continue;
    const p = arithmeticProblem(rng, a, op, b);
    return {
      family: `${op === '+' ? 'add' : 'sub'}${Math.max(da, db)}`,
      messages: [{ role: 'user', content: p.question }, assistant(p.answer, p.reasoning)],
      evaluation: { kind: 'number', answer: p.result },
    };
  }
}

// ---- string tasks

function spell(w) {
  return [...w].join(', ');
}

export function stringConversation(rng, split) {
  const words = WORDS[split];
  const kind = rng.weighted({ reverse: 2, count: 2, length: 1, sort: 2 });
  if (kind === 'reverse') {
    const w = pickEntity(rng, WORDS, split, 'word');
    const rev = [...w].reverse().join('');
    const q = rng.pick([`Reverse the word ${w}.`, `Spell ${w} backwards.`, `What is ${w} reversed?`, `Write "${w}" backwards.`]);
    return {
      family: 'reverse', messages: [{ role: 'user', content: q }, assistant(`${w} backwards is ${rev}.`,
        `The letters of ${w} are ${spell(w)}. In reverse order they are ${spell(rev)}. Joined together: ${rev}.`)],
      evaluation: { kind: 'contains', answer: rev },
    };
  }
  if (kind === 'count') {
    const w = pickEntity(rng, WORDS, split, 'word');
    const c = rng.chance(0.75) ? rng.pick([...w]) : rng.pick([...'abcdefghijklmnopqrstuvwxyz'].filter((x) => !w.includes(x)));
    let n = 0;
    const marked = [...w].map((x) => (x === c ? `${x} (${++n})` : x)).join(', ');
    const q = rng.pick([`How many times does the letter ${c} appear in ${w}?`, `Count the letter ${c} in ${w}.`, `How many ${c}'s are in the word ${w}?`]);
    return {
      family: 'count', messages: [{ role: 'user', content: q }, assistant(`The letter ${c} appears ${n} time${n === 1 ? '' : 's'} in ${w}.`,
        `I spell ${w} and count each ${c}: ${marked}. So ${c} appears ${n} time${n === 1 ? '' : 's'}.`)],
      evaluation: { kind: 'number', answer: n },
    };
  }
  if (kind === 'length') {
    const w = pickEntity(rng, WORDS, split, 'word');
    const counted = [...w].map((x, i) => `${x} (${i + 1})`).join(', ');
    const q = rng.pick([`How many letters does ${w} have?`, `How long is the word ${w}?`, `Count the letters in ${w}.`]);
    return {
      family: 'length', messages: [{ role: 'user', content: q }, assistant(`${w} has ${w.length} letters.`, `I count the letters: ${counted}. So ${w} has ${w.length} letters.`)],
      evaluation: { kind: 'number', answer: w.length },
    };
  }
  // sort: distinct first letters, so ordering by the first letter is the whole job.
  const n = rng.int(3, 5);
  const chosen = [];
  for (const w of rng.sample(words, words.length)) {
    if (!chosen.some((x) => x[0] === w[0])) chosen.push(w);
    if (chosen.length === n) break;
  }
  const sorted = [...chosen].sort();
  const q = rng.pick([`Sort these words alphabetically: ${chosen.join(', ')}.`, `Put these words in alphabetical order: ${chosen.join(', ')}.`,
    `Sort alphabetically: ${chosen.join(', ')}`]);
  return {
    family: 'sort', messages: [{ role: 'user', content: q }, assistant(`In alphabetical order: ${sorted.join(', ')}.`,
      `The first letters are ${chosen.map((w) => w[0]).join(', ')}. In alphabetical order they are ${sorted.map((w) => w[0]).join(', ')}. So the order is ${sorted.join(', ')}.`)],
    evaluation: { kind: 'contains', answer: sorted.join(', ') },
  };
}

// ---- remembering facts across turns

const FACTS = {
  name: { tell: (v) => rng0([`My name is ${v}.`, `I'm ${v}.`, `Call me ${v}.`]), ask: ['What is my name?', 'Do you remember my name?', "What's my name?"], answer: (v) => `Your name is ${v}.`, think: (v) => `the user's name is ${v}` },
  city: { tell: (v) => rng0([`I live in ${v}.`, `I am from ${v}.`, `My home town is ${v}.`]), ask: ['Where do I live?', 'Which city am I from?', 'Do you remember where I live?'], answer: (v) => `You live in ${v}.`, think: (v) => `the user lives in ${v}` },
  color: { tell: (v) => rng0([`My favourite colour is ${v}.`, `I like the colour ${v} best.`]), ask: ['What is my favourite colour?', 'Which colour do I like best?'], answer: (v) => `Your favourite colour is ${v}.`, think: (v) => `the user's favourite colour is ${v}` },
  pet: { tell: (v, animal) => rng0([`My ${animal} is called ${v}.`, `I have a ${animal} named ${v}.`]), ask: (animal) => [`What is my ${animal} called?`, `What is the name of my ${animal}?`], answer: (v, animal) => `Your ${animal} is called ${v}.`, think: (v, animal) => `the user's ${animal} is called ${v}` },
  food: { tell: (v) => rng0([`My favourite food is ${v}.`, `I love eating ${v}.`]), ask: ['What is my favourite food?', 'What food do I love?'], answer: (v) => `Your favourite food is ${v}.`, think: (v) => `the user's favourite food is ${v}` },
  number: { tell: (v) => rng0([`My lucky number is ${v}.`, `Remember that my lucky number is ${v}.`]), ask: ['What is my lucky number?', 'Do you remember my lucky number?'], answer: (v) => `Your lucky number is ${v}.`, think: (v) => `the user's lucky number is ${v}` },
};
// The phrasing choice inside FACTS.tell needs the conversation's rng; factsConversation sets it.
let currentRng;
const rng0 = (list) => currentRng.pick(list);

/**
 * factsConversation's distractor turns ask "what is A + b?" (A two digits, b one digit) without
 * checking isHeldOutProblem, so such sums may appear in training: held-out sets leave them out.
 */
export const IN_FACTS_DISTRACTORS = (a, op, b) => op === '+' && a >= 10 && a <= 99 && b <= 9;

export function factsConversation(rng, split) {
  currentRng = rng;
  const kinds = rng.sample(Object.keys(FACTS), rng.int(1, 3));
  const animal = rng.pick(ANIMALS);
  const value = {
    name: pickEntity(rng, NAMES, split, 'name'), city: pickEntity(rng, CITIES, split, 'city'), color: rng.pick(COLORS[split]),
    pet: pickEntity(rng, PETS, split, 'pet'), food: rng.pick(FOODS[split]), number: rng.int(0, 999),
  };
  const told = kinds.map((k) => FACTS[k].tell(value[k], animal)).join(' ');
  const greet = kinds.includes('name') ? `Nice to meet you, ${value.name}!` : 'Thanks for telling me!';
  const messages = [
    { role: 'user', content: rng.chance(0.3) ? `Hi! ${told}` : told },
    assistant(`${greet} I will remember that.`, 'The user tells me about themselves. I should remember it.'),
  ];
  if (rng.chance(0.3)) {
    // A distractor turn in between, so the fact has to be found further back.
    const a = randomOperand(rng, 2);
    const b = randomOperand(rng, 1);
    messages.push({ role: 'user', content: `By the way, what is ${a} + ${b}?` }, assistant(`${a} + ${b} = ${a + b}.`, ''));
  }
  const unknown = rng.chance(0.15) ? rng.pick(Object.keys(FACTS).filter((k) => !kinds.includes(k))) : undefined;
  if (unknown) {
    const f = FACTS[unknown];
    const ask = typeof f.ask === 'function' ? f.ask(animal) : f.ask;
    const what = { name: 'your name', city: 'where you live', color: 'your favourite colour', pet: `your ${animal}'s name`, food: 'your favourite food', number: 'your lucky number' }[unknown];
    const theirs = what.replace(/^your /, 'their ').replace('where you live', 'where they live');
    messages.push({ role: 'user', content: rng.pick(ask) }, assistant(`You haven't told me ${what} yet.`, `The user never told me ${theirs}.`));
    return { family: 'facts', messages, evaluation: { kind: 'contains', answer: "haven't told me" } };
  }
  const k = rng.pick(kinds);
  const f = FACTS[k];
  const ask = typeof f.ask === 'function' ? f.ask(animal) : f.ask;
  messages.push({ role: 'user', content: rng.pick(ask) }, assistant(f.answer(value[k], animal), `Earlier ${f.think(value[k], animal)}.`));
  return { family: 'facts', messages, evaluation: { kind: 'contains', answer: String(value[k]) } };
}

// ---- tools

function weatherTool(variant) {
  const properties = { city: { type: 'string', description: 'City name' } };
  if (variant === 'unit') properties.unit = { type: 'string', enum: ['celsius', 'fahrenheit'] };
  if (variant === 'days') properties.days = { type: 'integer', description: 'Number of days to forecast' };
  return { type: 'function', function: { name: 'get_weather', description: 'Get the current weather for a city', parameters: { type: 'object', properties, required: ['city'] } } };
}

function attributeTool(attr) {
  return { type: 'function', function: { name: `get_${attr.key}`, description: attr.desc, parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } };
}

const OTHER_TOOLS = {
  convert_currency: { type: 'function', function: { name: 'convert_currency', description: 'Convert an amount of money from one currency to another', parameters: { type: 'object', properties: { amount: { type: 'number' }, from: { type: 'string' }, to: { type: 'string' } }, required: ['amount', 'from', 'to'] } } },
  set_timer: { type: 'function', function: { name: 'set_timer', description: 'Start a countdown timer', parameters: { type: 'object', properties: { minutes: { type: 'integer' }, label: { type: 'string' } }, required: ['minutes'] } } },
  search_books: { type: 'function', function: { name: 'search_books', description: 'Search a library catalogue for books on a topic', parameters: { type: 'object', properties: { topic: { type: 'string' }, max_results: { type: 'integer' } }, required: ['topic'] } } },
  send_email: { type: 'function', function: { name: 'send_email', description: 'Send a short email', parameters: { type: 'object', properties: { to: { type: 'string' }, subject: { type: 'string' } }, required: ['to', 'subject'] } } },
  get_distance: { type: 'function', function: { name: 'get_distance', description: 'Get the travel distance between two cities in km', parameters: { type: 'object', properties: { origin: { type: 'string' }, destination: { type: 'string' } }, required: ['origin', 'destination'] } } },
};

/** A tool the model can be asked to use: its definition, a request, the call, a result and the answer. */
function toolScenario(rng, split, name) {
  const city = pickEntity(rng, CITIES, split, 'city');
  if (name === 'get_weather') {
    const variant = rng.pick(['plain', 'plain', 'unit', 'days']);
    const tool = weatherTool(variant);
    const sky = rng.pick(SKIES);
    if (variant === 'days' && rng.chance(0.6)) {
      const days = rng.int(2, 5);
      const forecast = Array.from({ length: days }, () => rng.pick(SKIES));
      return {
        tool, request: rng.pick([`What will the weather be in ${city} for the next ${days} days?`, `Give me a ${days}-day forecast for ${city}.`]),
        call: { name, arguments: { city, days } }, why: `the forecast for ${city} for ${days} days`,
        result: { city, days, forecast }, answer: `The forecast for ${city} for the next ${days} days: ${forecast.join(', ')}.`,
        mustContain: forecast,
      };
    }
    if (variant === 'unit' && rng.chance(0.5)) {
      const t = rng.int(-5, 99);
      return {
        tool, request: rng.pick([`What is the weather in ${city} in fahrenheit?`, `How warm is it in ${city}? Use fahrenheit.`]),
        call: { name, arguments: { city, unit: 'fahrenheit' } }, why: `the weather in ${city} in fahrenheit`,
        result: { city, temperature_f: t, sky }, answer: `It is ${t} °F and ${sky} in ${city}.`, mustContain: [String(t), sky],
      };
    }
    const t = rng.int(-20, 38);
    return {
      tool, request: rng.pick([`What is the weather in ${city}?`, `How is the weather in ${city} today?`, `Is it warm in ${city} right now?`, `Weather in ${city}, please.`, `What's the weather like in ${city}?`]),
      call: { name, arguments: { city } }, why: `the weather in ${city}`,
      result: { city, temperature_c: t, sky }, answer: `It is ${t} °C and ${sky} in ${city}.`, mustContain: [String(t), sky],
    };
  }
  if (typeof name === 'object' || (name.startsWith('get_') && name !== 'get_distance')) {
    const attr = typeof name === 'object' ? name : [...CITY_ATTRIBUTES.train, ...CITY_ATTRIBUTES.heldOut].find((a) => `get_${a.key}` === name);
    name = `get_${attr.key}`;
    const value = attr.value(rng);
    return {
      tool: attributeTool(attr),
      request: rng.pick([`What is the ${attr.noun} in ${city}?`, `Can you tell me the ${attr.noun} of ${city}?`, `I need the ${attr.noun} for ${city}.`, `Look up the ${attr.noun} in ${city}, please.`]),
      call: { name, arguments: { city } }, why: `the ${attr.noun} in ${city}`,
      result: { city, [attr.key]: value }, answer: `The ${attr.noun} in ${city} is ${value}${attr.unit}.`, mustContain: [String(value)],
    };
  }
  if (name === 'convert_currency') {
    const [from, to] = rng.sample(CURRENCIES, 2);
    const amount = rng.chance(0.7) ? rng.int(1, 999) : rng.int(1, 9999) / 100;
    const out = Math.round(amount * rng.int(20, 300)) / 100;
    return {
      tool: OTHER_TOOLS[name], request: rng.pick([`How much is ${amount} ${from} in ${to}?`, `Convert ${amount} ${from} to ${to}.`]),
      call: { name, arguments: { amount, from, to } }, why: `${amount} ${from} converted to ${to}`,
      result: { amount, from, to, result: out }, answer: `${amount} ${from} is ${out} ${to}.`, mustContain: [String(out)],
    };
  }
  if (name === 'set_timer') {
    const minutes = rng.int(1, 120);
    const label = rng.chance(0.5) ? rng.pick(FOODS[split]) : undefined;
    return {
      tool: OTHER_TOOLS[name],
      request: label ? `Set a timer for ${minutes} minutes for the ${label}.` : rng.pick([`Set a timer for ${minutes} minutes.`, `Start a ${minutes} minute timer.`]),
      call: { name, arguments: label ? { minutes, label } : { minutes } }, why: `a timer of ${minutes} minutes`,
      result: { status: 'started', minutes }, answer: `Your ${minutes} minute timer is running.`, mustContain: [String(minutes)],
    };
  }
  if (name === 'search_books') {
    const topic = rng.pick(BOOK_TOPICS[split]);
    const n = rng.int(1, 3);
    const titles = rng.sample(WORDS[split], n).map((w) => `The ${w[0].toUpperCase()}${w.slice(1)} of ${topic[0].toUpperCase()}${topic.slice(1)}`);
    const withMax = rng.chance(0.6);
    return {
      tool: OTHER_TOOLS[name], request: withMax ? `Find ${n} books about ${topic}.` : rng.pick([`Find books about ${topic}.`, `Search for a book on ${topic}.`]),
      call: { name, arguments: withMax ? { topic, max_results: n } : { topic } }, why: `books about ${topic}`,
      result: { results: titles }, answer: `I found: ${titles.join(', ')}.`, mustContain: titles,
    };
  }
  if (name === 'send_email') {
    const to = pickEntity(rng, NAMES, split, 'name');
    const subject = rng.pick(['Lunch tomorrow', 'Meeting notes', 'Happy birthday', 'Weekend plans', 'The report', 'Dinner on Friday', 'Travel plans']);
    return {
      tool: OTHER_TOOLS[name], request: rng.pick([`Send an email to ${to} with the subject ${subject}.`, `Email ${to} about ${subject}.`]),
      call: { name, arguments: { to, subject } }, why: `an email to ${to}`,
      result: { status: 'sent', to }, answer: `Done: I sent the email "${subject}" to ${to}.`, mustContain: [to],
    };
  }
  // get_distance
  let [origin, destination] = rng.sample(CITIES[split], 2);
  if (split === 'train' && syntheticShare > 0) {
    origin = pickEntity(rng, CITIES, split, 'city');
    do destination = pickEntity(rng, CITIES, split, 'city'); while (destination === origin);
  }
  const km = rng.int(5, 12000);
  return {
    tool: OTHER_TOOLS.get_distance, request: rng.pick([`How far is it from ${origin} to ${destination}?`, `What is the distance between ${origin} and ${destination}?`]),
    call: { name: 'get_distance', arguments: { origin, destination } }, why: `the distance from ${origin} to ${destination}`,
    result: { origin, destination, km }, answer: `It is ${km} km from ${origin} to ${destination}.`, mustContain: [String(km)],
  };
}

export const TRAIN_TOOL_NAMES = ['get_weather', ...CITY_ATTRIBUTES.train.map((a) => `get_${a.key}`), ...Object.keys(OTHER_TOOLS)];
export const HELD_OUT_TOOL_NAMES = CITY_ATTRIBUTES.heldOut.map((a) => `get_${a.key}`);

function toolDefinition(rng, split, name) {
  return toolScenario(rng, split, name).tool;
}

/**
 * A tool conversation: the tool list in the system prompt, a request, the model's call, the tool's
 * result and an answer that uses it. `toolNames` restricts which tool is asked for (eval: held-out).
 */
export function toolConversation(rng, split, { toolNames = TRAIN_TOOL_NAMES, noToolNeeded = undefined } = {}) {
  const needsNone = noToolNeeded ?? rng.chance(0.12);
  let main = rng.pick(toolNames);
  // A made-up attribute tool object instead of a name (training only; see setSyntheticTools).
  if (split === 'train' && syntheticToolShare > 0 && rng.chance(syntheticToolShare)) main = syntheticAttribute(rng);
  const distractors = rng.sample(TRAIN_TOOL_NAMES.filter((n) => n !== main), rng.int(0, 2));
  if (needsNone) {
    // Tools are offered but the question needs none: the model answers directly.
    const tools = rng.sample([main, ...distractors].map((n) => toolDefinition(rng, split, n)), 1 + distractors.length);
    const inner = rng.chance(0.6) ? arithmeticConversation(rng, split) : chatConversation(rng, split);
    return { family: 'tool_none', tools, messages: inner.messages, evaluation: { kind: 'no_tool_call' } };
  }
  const two = main === 'get_weather' && rng.chance(0.15);
  let s = toolScenario(rng, split, main);
  let s2;
  if (two) {
    // Two cities in one request: two plain weather calls in one turn, two results in one observation.
    while (Object.keys(s.call.arguments).length !== 1) s = toolScenario(rng, split, main);
    do s2 = toolScenario(rng, split, main);
    while (Object.keys(s2.call.arguments).length !== 1 || s2.call.arguments.city === s.call.arguments.city);
  }
  const tools = rng.sample([s.tool, ...distractors.map((n) => toolDefinition(rng, split, n))], 1 + distractors.length);
  if (two) {
    const c1 = s.call.arguments.city;
    const c2 = s2.call.arguments.city;
    return {
      family: 'tool', tools,
      messages: [
        { role: 'user', content: rng.pick([`What is the weather in ${c1} and in ${c2}?`, `How is the weather in ${c1} and ${c2}?`]) },
        assistant('', `The user wants the weather in two cities, ${c1} and ${c2}. I call get_weather once for each.`, [s.call, s2.call]),
        { role: 'tool', content: JSON.stringify(s.result) },
        { role: 'tool', content: JSON.stringify(s2.result) },
        assistant(`${s.answer} ${s2.answer}`, `The tools returned the weather for ${c1} and ${c2}.`),
      ],
      evaluation: { kind: 'tool', calls: [s.call, s2.call], results: [s.result, s2.result], mustContain: [...s.mustContain, ...s2.mustContain] },
    };
  }
  return {
    family: 'tool', tools,
    messages: [
      { role: 'user', content: s.request },
      assistant('', `The user wants ${s.why}. The ${s.call.name} tool gives that, so I call it.`, [s.call]),
      { role: 'tool', content: JSON.stringify(s.result) },
      assistant(s.answer, `The tool returned the result. I tell the user.`),
    ],
    evaluation: { kind: 'tool', calls: [s.call], results: [s.result], mustContain: s.mustContain },
  };
}

/** Adds an ordinary system message in front (some users set one; the model should not be thrown by it). */
export function maybeSystem(rng, conv, p = 0.15) {
  if (!rng.chance(p)) return conv;
  const sys = rng.pick(['You are a helpful assistant.', 'Be concise.', 'You are terse.', 'Answer briefly and politely.', 'You are a friendly assistant.']);
  return { ...conv, messages: [{ role: 'system', content: sys }, ...conv.messages] };
}
