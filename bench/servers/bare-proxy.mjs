// The baseline: http-proxy on node:http with the same keep-alive agent settings as the gateway,
// and nothing else (no context, classification, policy, JWT or header hygiene).
import http from 'node:http';
import httpProxy from 'http-proxy';

const agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 256, scheduling: 'lifo' });
const proxy = httpProxy.createProxyServer({ target: process.env.TARGET, agent, changeOrigin: true });
proxy.on('error', (_err, _req, res) => {
  res.writeHead(502);
  res.end();
});
const server = http.createServer((req, res) => proxy.web(req, res));
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`);
});
