// Module hooks for the tests: `.ts` files load as the JavaScript tsc emitted into .build/ (with
// its source map, so coverage and stack traces name the TypeScript lines), or, when the source
// is newer than that output or has none, transpiled here by TypeScript itself. Imports written
// `./x.js`, as NodeNext wants, resolve to `./x.ts` when only the TypeScript exists.
import { readFile, stat } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const OUT = join(ROOT, '.build');
const SOURCE_MAP_COMMENT = /\/\/# sourceMappingURL=\S+\s*$/;

// A module's path, and what follows it (tap's mocks add `?tapmock=…`).
const PATH_AND_SUFFIX = /^([^?#]*)(.*)$/s;

export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (err) {
    const [, path, suffix] = PATH_AND_SUFFIX.exec(specifier);
    const relativeJs = path.endsWith('.js') && (path.startsWith('.') || path.startsWith('file:'));
    if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !relativeJs) throw err;
    return nextResolve(`${path.slice(0, -3)}.ts${suffix}`, context);
  }
}

export async function load(url, context, nextLoad) {
  const [, path] = PATH_AND_SUFFIX.exec(url);
  if (!path.startsWith('file:') || !path.endsWith('.ts') || path.includes('/node_modules/')) {
    return nextLoad(url, context);
  }
  const file = fileURLToPath(path);
  const emitted = join(OUT, relative(ROOT, file)).replace(/\.ts$/, '.js');
  const [source, output, built] = await Promise.all([stat(file), stat(emitted).catch(() => undefined), buildStart()]);
  // Output of the last complete typecheck, of a source not touched since that run began.
  if (output !== undefined && built !== undefined && source.mtimeMs < built && output.mtimeMs >= built) {
    const [code, map] = await Promise.all([readFile(emitted, 'utf8'), readFile(`${emitted}.map`, 'utf8')]);
    return { format: 'module', source: code.replace(SOURCE_MAP_COMMENT, inlineMap(map, file)), shortCircuit: true };
  }
  return { format: 'module', source: await transpile(file), shortCircuit: true };
}

let started;

/**
 * When the last complete `make typecheck` began (.build/.stamp, see the Makefile), or undefined
 * when there was none or a compiler setting changed since: then nothing in .build/ is used.
 */
function buildStart() {
  started ??= (async () => {
    const [stamp, ...configs] = await Promise.all(
      ['.build/.stamp', 'tsconfig.json', 'tsconfig.test.json'].map((f) => stat(join(ROOT, f)).catch(() => undefined)),
    );
    if (stamp === undefined || configs.some((c) => c === undefined || c.mtimeMs >= stamp.mtimeMs)) return undefined;
    return stamp.mtimeMs;
  })();
  return started;
}

/**
 * tsc's map, inline and naming the source beside the module (as ts-node's and the fallback's
 * are): tap's coverage reads a map from the module itself, and one referenced by path put the
 * functions of every file at other places than the maps of the build the CLI tests run (dist/),
 * counting each function twice.
 */
function inlineMap(text, file) {
  const map = { ...JSON.parse(text), sources: [basename(file)], sourceRoot: '' };
  return `//# sourceMappingURL=data:application/json;charset=utf-8;base64,${Buffer.from(JSON.stringify(map)).toString('base64')}\n`;
}

let compilerOptions;

async function transpile(file) {
  const ts = (await import('typescript')).default;
  if (compilerOptions === undefined) {
    const configFile = join(ROOT, 'tsconfig.test.json');
    const { config } = ts.readConfigFile(configFile, ts.sys.readFile);
    const parsed = ts.parseJsonConfigFileContent(config, ts.sys, ROOT, undefined, configFile);
    // ES modules (the package is "type": "module"; transpileModule cannot look that up itself).
    compilerOptions = {
      ...parsed.options,
      module: ts.ModuleKind.ES2022,
      // Maps name the source beside the module, not by its place under .build/.
      outDir: undefined,
      rootDir: undefined,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      noEmit: false,
      sourceMap: false,
      inlineSourceMap: true,
      inlineSources: true,
    };
  }
  const text = await readFile(file, 'utf8');
  return ts.transpileModule(text, { fileName: file, compilerOptions }).outputText;
}
