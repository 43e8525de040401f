// Evaluates GitHub Actions expressions with GitHub's own library (@actions/expressions, the evaluator
// of GitHub's Actions language services): reads JSON {"expression": ..., "contexts": {...}} lines on
// standard input, writes one JSON line per expression: {"value": ..., "truthy": bool} or {"error": ...}.
import { createInterface } from "node:readline";
import { Evaluator, Lexer, Parser, data } from "@actions/expressions";
import { truthy } from "@actions/expressions/result";

for await (const line of createInterface({ input: process.stdin })) {
  let answer;
  try {
    const { expression, contexts } = JSON.parse(line);
    const lexed = new Lexer(expression).lex();
    const parsed = new Parser(lexed.tokens, Object.keys(contexts), []).parse();
    const values = JSON.parse(JSON.stringify(contexts), data.reviver);
    const result = new Evaluator(parsed, values).evaluate();
    answer = { value: JSON.parse(JSON.stringify(result, data.replacer)), truthy: truthy(result) };
  } catch (error) {
    answer = { error: String(error) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
