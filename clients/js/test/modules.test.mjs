// The shape of src/: no import cycles (a cycle makes module evaluation order
// matter, and a bundler may hand one side an undefined class), no module over
// 500 lines, and ClientErrorType naming every type the client's own errors carry.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const require = createRequire(import.meta.url);
const ts = require('typescript');
const SRC = fileURLToPath(new URL('../src/', import.meta.url));
// Subfolders too (src/launch/), each named by its path from src/.
const files = readdirSync(SRC, { recursive: true }).map((name) => name.split(path.sep).join('/'))
  .filter((name) => name.endsWith('.ts'));
const source = (name) => readFileSync(path.join(SRC, name), 'utf8');

/** The src/ modules `name` imports or re-exports (type-only ones too: they are cycles for readers and for tsc's emit order alike). */
function localImports(name) {
  const { importedFiles } = ts.preProcessFile(source(name), true, true);
  return importedFiles
    .map((f) => f.fileName)
    .filter((spec) => spec.startsWith('./') || spec.startsWith('../'))
    .map((spec) => path.relative(SRC, path.resolve(SRC, path.dirname(name), spec)).split(path.sep).join('/')
      .replace(/\.js$/, '.ts'));
}

/** Every cycle in the graph, each as the path of modules that closes it. */
export function findCycles(graph) {
  const cycles = [];
  const state = new Map(); // undefined: not seen, 1: on the current path, 2: done
  const stack = [];
  const visit = (node) => {
    state.set(node, 1);
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 1) cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (state.get(next) === undefined) visit(next);
    }
    stack.pop();
    state.set(node, 2);
  };
  for (const node of graph.keys()) if (state.get(node) === undefined) visit(node);
  return cycles;
}

describe('src modules', () => {
  it('the cycle finder finds a cycle, type-only imports included', () => {
    const { importedFiles } = ts.preProcessFile("import type { A } from './a.js';\nexport { B } from './b.js';", true, true);
    assert.deepEqual(importedFiles.map((f) => f.fileName), ['./a.js', './b.js']);
    const graph = new Map([['a.ts', ['b.ts']], ['b.ts', ['c.ts']], ['c.ts', ['a.ts']], ['d.ts', ['a.ts']]]);
    assert.deepEqual(findCycles(graph), [['a.ts', 'b.ts', 'c.ts', 'a.ts']]);
    assert.deepEqual(findCycles(new Map([['a.ts', ['b.ts']], ['b.ts', []]])), []);
  });

  it('import one another without a cycle', () => {
    const graph = new Map(files.map((name) => [name, localImports(name)]));
    for (const [name, imports] of graph) {
      for (const target of imports) assert.ok(files.includes(target), `${name} imports ${target}, which is not in src/`);
    }
    assert.ok(graph.get('client.ts').includes('connection.ts'), 'the graph is read: client.ts imports connection.ts');
    const cycles = findCycles(graph);
    assert.deepEqual(cycles, [], `import cycles in src/:\n${cycles.map((c) => c.join(' -> ')).join('\n')}`);
  });

  // Every module stays readable in one sitting.
  it('have at most 500 lines', () => {
    assert.ok(files.includes('launch/child.ts'), 'subfolders are read');
    const long = files.filter((name) => source(name).split('\n').length > 500);
    assert.deepEqual(long, []);
  });
});

/** The strings an expression can be: a literal, or either branch of `c ? 'A' : 'B'`; null for anything else. */
function literalsOf(node) {
  if (ts.isParenthesizedExpression(node)) return literalsOf(node.expression);
  if (ts.isStringLiteralLike(node)) return [node.text];
  if (ts.isConditionalExpression(node)) {
    const a = literalsOf(node.whenTrue);
    const b = literalsOf(node.whenFalse);
    return a && b ? [...a, ...b] : null;
  }
  return null;
}

/** The `type` argument of every `new IgorError(message, code, type, ...)` (or a subclass's `super(...)`) in src/: literals, and the others' source text. */
function igorErrorTypes() {
  const literals = new Map(); // type -> where
  const others = [];
  for (const name of files) {
    const file = ts.createSourceFile(name, source(name), ts.ScriptTarget.Latest, true);
    const visit = (node, inSubclass = false) => {
      if (ts.isClassDeclaration(node)) {
        // A subclass (LaunchError) gives its type in super(message, code, type, ...).
        const extendsIgor = (node.heritageClauses ?? []).some((h) => h.types.some((t) => t.expression.getText(file) === 'IgorError'));
        ts.forEachChild(node, (child) => visit(child, extendsIgor));
        return;
      }
      const isSuper = inSubclass && ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.SuperKeyword;
      if (isSuper || (ts.isNewExpression(node) && node.expression.getText(file) === 'IgorError')) {
        const arg = node.arguments?.[2];
        const where = `${name}:${file.getLineAndCharacterOfPosition(node.getStart(file)).line + 1}`;
        const types = arg && literalsOf(arg);
        if (types) for (const type of types) literals.set(type, [...(literals.get(type) ?? []), where]);
        else others.push({ where, text: arg ? arg.getText(file) : '(none)' });
      }
      ts.forEachChild(node, (child) => visit(child, inSubclass));
    };
    visit(file);
  }
  return { literals, others };
}

/** The members of the ClientErrorType union in errors.ts. */
function clientErrorTypes() {
  const file = ts.createSourceFile('errors.ts', source('errors.ts'), ts.ScriptTarget.Latest, true);
  const alias = file.statements.find((s) => ts.isTypeAliasDeclaration(s) && s.name.text === 'ClientErrorType');
  assert.ok(alias, 'errors.ts declares ClientErrorType');
  const members = ts.isUnionTypeNode(alias.type) ? alias.type.types : [alias.type];
  return new Set(members.map((m) => (ts.isLiteralTypeNode(m) && ts.isStringLiteral(m.literal) ? m.literal.text : m.getText(file))));
}

describe('ClientErrorType', () => {
  it('names every type the client gives the errors it makes', () => {
    const { literals, others } = igorErrorTypes();
    assert.ok(literals.has('ConnectionClosed') && literals.has('QueueFull'), 'the errors are found');
    const declared = clientErrorTypes();
    const missing = [...literals].filter(([type]) => !declared.has(type)).map(([type, where]) => `${type} (${where.join(', ')})`);
    assert.deepEqual(missing, [], 'types used in src/ but not in ClientErrorType');
    // A type that is not a literal may only carry on one the server sent (`error.type` of a wire error).
    const unknown = others.filter(({ text }) => !/^(error|message)\.type$/.test(text) && !text.startsWith("typeof message.type === 'string'"));
    assert.deepEqual(unknown, [], 'IgorError types that are neither a literal nor a server type carried on');
    // And no stale member: each one is still made somewhere.
    assert.deepEqual([...declared].filter((type) => !literals.has(type)), [], 'ClientErrorType members no src/ code uses');
  });

  it('programmer errors are native TypeErrors, not IgorErrors', () => {
    const { literals } = igorErrorTypes();
    assert.equal(literals.has('TypeError'), false, `new IgorError(..., 'TypeError') at ${literals.get('TypeError')}`);
  });
});
