// The article's echo example, step by step, against this server's /ws/echo/.
// Differences from the article: the URL is our own endpoint (wss:// under https), the
// message comes from the text field, and text is rendered with textContent, never
// innerHTML, so an echoed "<script>" stays text.

const outputDiv = document.getElementById("output");
const stateDiv = document.getElementById("state");
const form = document.getElementById("echo-form");
const input = document.getElementById("message");

function echoUrl() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}/ws/echo/`;
}

function line(text, ok = true) {
  const span = document.createElement("span");
  span.className = ok ? "ok" : "err";
  span.style.color = ok ? "green" : "red";
  span.style.marginBottom = "10px";
  span.style.display = "block";
  span.textContent = text;
  outputDiv.appendChild(span);
}

const STATES = ["CONNECTING", "OPEN", "CLOSING", "CLOSED"];

function run(message) {
  outputDiv.textContent = "";
  const ws = new WebSocket(echoUrl());
  line("Connecting...");

  ws.onopen = function () {
    line("Connected to WebSocket");
    try {
      ws.send(message);
      line("Sent: " + message);
    } catch (error) {
      line("Error sending message: " + error.message, false);
    }
  };

  ws.onmessage = function (event) {
    line("Received: " + event.data);
    try {
      ws.close(); // Close the connection after receiving the message
    } catch (error) {
      line("Error closing connection: " + error.message, false);
    }
  };

  ws.onclose = function () {
    line("Disconnected from WebSocket");
  };

  ws.onerror = function () {
    // Browsers expose no detail for WebSocket errors; say what we know.
    line("WebSocket error: could not connect to " + echoUrl(), false);
  };

  // Display the current state of the connection every 500 ms until it is closed.
  const show = () => { stateDiv.textContent = "Connection State: " + STATES[ws.readyState]; };
  show();
  const stateInterval = setInterval(() => {
    show();
    if (ws.readyState === WebSocket.CLOSED) clearInterval(stateInterval);
  }, 500);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  run(input.value);
});
