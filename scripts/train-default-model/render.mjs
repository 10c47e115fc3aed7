// Conversations → training documents, rendered with the package's own chat-template renderer and the
// GLM-4.5 template it ships, so training text is byte for byte what `session.stream` will show the
// model at inference time.
//
// A document is a list of [text, trained] segments. Each assistant turn k is trained as the template's
// continuation of render(messages[:k], generation prompt): its text is render(messages[:k+1]) minus
// that prompt, plus the token the model ends its turn with (<|observation|> after tool calls, else
// <|user|>, both in the eos list). Turns share one document while the template's rendering of the
// history stays a prefix of the next prompt; GLM's template drops the reasoning of turns before the
// last user message, so a multi-turn chat with thinking starts a new document for the later turn.
import { renderChat } from '../../dist/lib/chat-template.js';
import { GLM45_CHAT_TEMPLATE } from '../../dist/lib/synthetic/glm45-chat-template.js';

/**
 * Applies a thinking mode to a conversation: 'on' keeps reasoning; 'off' is enable_thinking=false
 * (the template appends /nothink and an empty think block); 'nothink' is the user typing /nothink.
 */
export function withMode(conv, mode) {
  if (mode === 'on') return conv;
  const messages = conv.messages.map((m) => {
    if (m.role === 'assistant') return { ...m, reasoning_content: '' };
    if (m.role === 'user' && mode === 'nothink') return { ...m, content: `${m.content}${m.content.length % 2 ? ' ' : ''}/nothink` };
    return m;
  });
  return { ...conv, messages };
}

export function renderOptions(conv, mode) {
  return { ...(conv.tools ? { tools: conv.tools } : {}), ...(mode === 'off' ? { enableThinking: false } : {}) };
}

export function toDocuments(conv, mode) {
  const c = withMode(conv, mode);
  const opts = renderOptions(conv, mode);
  const docs = [];
  let doc = null;
  let text = '';
  c.messages.forEach((m, k) => {
    if (m.role !== 'assistant') return;
    const prompt = renderChat(GLM45_CHAT_TEMPLATE, c.messages.slice(0, k), { ...opts, addGenerationPrompt: true });
    const full = renderChat(GLM45_CHAT_TEMPLATE, c.messages.slice(0, k + 1), opts);
    if (!full.startsWith(prompt)) throw new Error(`turn ${k} does not extend its prompt:\n${prompt}\n---\n${full}`);
    const target = full.slice(prompt.length) + (m.tool_calls ? '<|observation|>' : '<|user|>');
    if (doc && prompt.startsWith(text)) {
      if (prompt.length > text.length) doc.push([prompt.slice(text.length), false]);
    } else {
      if (doc) docs.push(doc);
      doc = [[prompt, false]];
    }
    doc.push([target, true]);
    text = prompt + target;
  });
  if (doc) docs.push(doc);
  return docs;
}
