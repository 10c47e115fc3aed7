// Training text for the synthetic tokenizer's BPE merges (lib/synthetic/tokenizer.ts). Written for
// this project; it only needs to be varied enough that the learned merges look like a real
// tokenizer's: English words with leading spaces, code with indentation and punctuation runs, CJK,
// accented Latin, emoji, numbers, and the chat-style markup the template produces. Changing this
// text changes the tokenizer of every synthetic checkpoint the tests write.

export const TOKENIZER_CORPUS: readonly string[] = [
  `The quick brown fox jumps over the lazy dog. The dog does not seem to mind, and the fox is happy.
When the weather is good, we walk along the river and talk about the things we want to build.
Is it going to rain today? I think it will be sunny in the morning and cloudy in the afternoon.
She said that the meeting would start at 10:30, but it was moved to the next day because of the storm.
They're working on a new version of the model, and it's much faster than the one we used before.
What is the capital of France? The capital of France is Paris. What is the capital of Japan? Tokyo.
Please write a short summary of the following text, and then answer the question at the end.
Here is the answer: the function returns the sum of the two numbers, or an error if the input is invalid.
I can help you with that. First, let me check the weather for the city you asked about.
You are a helpful assistant. Answer the user's questions as clearly and accurately as you can.`,

  `function add(a, b) {
  return a + b;
}

const result = add(2, 3);
console.log(\`result = \${result}\`);

export async function fetchData(url: string): Promise<string> {
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(\`request failed: \${response.status}\`);
  }
  return await response.text();
}

for (let i = 0; i < items.length; i++) {
  if (items[i] === undefined) continue;
  total += items[i].value * 2;
}`,

  `def fibonacci(n):
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    a, b = 0, 1
    for _ in range(n - 1):
        a, b = b, a + b
    return b


class Tokenizer:
    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.merges = merges

    def encode(self, text):
        return [self.vocab[t] for t in self.split(text) if t in self.vocab]

if __name__ == "__main__":
    print(fibonacci(10))`,

  `{"name": "get_weather", "description": "Get the current weather for a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}
{"temp": 20, "condition": "sunny", "humidity": 0.45, "wind": [3, 5, 8]}
<tool_call>get_weather
<arg_key>city</arg_key>
<arg_value>Zürich</arg_value>
</tool_call>
<tool_response>
{"temp": 20}
</tool_response>`,

  `人工智能是计算机科学的一个分支，它试图理解智能的本质，并生产出一种新的能以人类智能相似的方式做出反应的智能机器。
今天天气很好，我们去公园散步吧。你好，世界！我们的模型可以理解中文和英文。
北京是中国的首都，上海是中国最大的城市。这个问题的答案是什么？请一步一步地思考。
自然语言处理是人工智能的重要方向。大语言模型在很多任务上表现出色。`,

  `日本語の文章も少し入れておきます。今日はいい天気ですね。東京から大阪まで新幹線で行きました。
ありがとうございます。よろしくお願いします。
한국어 문장도 조금 있습니다. 안녕하세요, 만나서 반갑습니다.`,

  `Größe, Straße, Zürich, München, Köln — über die Brücke gehen wir zusammen.
Café, naïve, résumé, déjà vu, façade, élève, où est la gare ? C'est très bien, merci beaucoup.
¿Dónde está la biblioteca? El niño comió una manzana. São Paulo é uma cidade enorme.
Привет, как дела? Москва — столица России. Ελληνικά: καλημέρα κόσμε.
مرحبا بالعالم. שלום עולם. नमस्ते दुनिया।`,

  `Emoji: 😀 😃 😄 😁 😆 🙂 🙃 😉 😊 😇 🥰 😍 🤩 😘 👍 👍🏽 👋 🎉 🚀 🔥 ❤️ ✨ ✅ ❌ ⚠️
Families and flags: 👨‍👩‍👧‍👦 👩‍💻 🧑‍🚀 🏳️‍🌈 🇨🇭 🇯🇵 🇺🇸 — and keycaps 1️⃣ 2️⃣ #️⃣.
Math: ∑ ∫ √ ∞ ≈ ≠ ≤ ≥ ± × ÷ π α β γ δ λ μ σ ω → ← ↔ ⇒ ∀ ∃ ∈ ∉ ⊂ ∪ ∩.`,

  `Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 2025 3.14159 2.71828 1,000,000 -17 +23 0x1F 1e-5 50%
Dates: 2025-07-28, 12/31/1999, 09:45:00. Phone: +41 44 123 45 67. Version 4.5.1, build 20250728.
    indented line with four spaces
\tindented line with a tab
		two tabs

Windows line end\r
blank lines above and trailing spaces   
`,
];
