// GET a URL with Node's global fetch; proxy and CA come from the environment (`shield env`).
// Node 20's fetch ignores HTTP(S)_PROXY (NODE_USE_ENV_PROXY needs Node 24+), so the agent
// installs undici's EnvHttpProxyAgent, which reads HTTPS_PROXY/HTTP_PROXY/NO_PROXY, as the
// global dispatcher. The proxy's CA reaches TLS through NODE_EXTRA_CA_CERTS.
import { EnvHttpProxyAgent, setGlobalDispatcher } from "undici";

setGlobalDispatcher(new EnvHttpProxyAgent());
const r = await fetch(process.argv[2]);
console.log(JSON.stringify({ status: r.status, body: await r.text() }));
