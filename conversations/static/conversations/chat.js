// /chat/: a chat client of the public API, nothing more (conversations/chat_page.py says why).
// The session cookie authenticates; POSTs carry the CSRF token. Each reply is read from
// GET /api/v1/tasks/stream/{task_id} (Server-Sent Events) as it is written; EventSource
// reconnects by itself with Last-Event-ID, so a dropped connection loses no words.
"use strict";

(() => {
  const T = JSON.parse(document.getElementById("chat-texts").textContent);
  const CHAT_USER = JSON.parse(document.getElementById("chat-user-id").textContent);
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const FINISHED = ["SUCCESS", "FAILURE", "REVOKED"];
  const $ = (id) => document.getElementById(id);
  const page = { conversation: null, source: null, taskId: null };

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRFToken"] = CSRF;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new Error((data && data.message) || `${T.request_failed} (${response.status})`);
    return data;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function notice(text) { $("notice").textContent = text || ""; }

  // --- conversations ------------------------------------------------------------------

  async function loadConversations() {
    const { results } = await api("GET", "/api/v1/conversations/?limit=50");
    const list = $("conversations");
    list.replaceChildren();
    if (!results.length) list.append(element("li", "muted", T.no_conversations));
    for (const conversation of results) {
      const item = element("li");
      const button = element("button", "conversation");
      button.type = "button";
      button.dataset.id = conversation.conversation_id;
      button.append(element("span", "name", conversation.title || conversation.conversation_id),
        element("span", "when", new Date(conversation.updated_at).toLocaleString()));
      button.addEventListener("click", () => openConversation(conversation.conversation_id));
      if (page.conversation && page.conversation.conversation_id === conversation.conversation_id) {
        button.classList.add("current");
      }
      item.append(button);
      list.append(item);
    }
  }

  async function openConversation(conversationId) {
    if (page.source) return;  // one reply at a time: stop it first
    const conversation = await api("GET", `/api/v1/conversations/${encodeURIComponent(conversationId)}/`);
    page.conversation = conversation;
    $("conversation-title").textContent = conversation.title || conversation.conversation_id;
    for (const button of document.querySelectorAll("#conversations button")) {
      button.classList.toggle("current", button.dataset.id === conversationId);
    }
    const messages = $("messages");
    messages.replaceChildren();
    if (!conversation.messages.length) messages.append(element("li", "muted empty", T.no_messages));
    for (const message of conversation.messages) {
      if (message.role === "user") {
        addMessage("user", message.content);
      } else {
        const reply = addMessage("assistant", message.content);
        markBudget(reply, message.finish_reason);
        showFigures(reply, { task_id: message.task_id, tokens: message.tokens, cost: message.cost });
        if (message.task_id) {  // status and time to first token are in the task's /status document
          api("GET", `/api/v1/tasks/status/${encodeURIComponent(message.task_id)}`)
            .then((document_) => showFigures(reply, figuresOf(document_))).catch(() => {});
        }
      }
    }
    setComposer(true);
    $("message").focus();
  }

  // A new conversation is made on the server with its first message (titled by it), so
  // "New conversation" pressed twice leaves no empty ones behind.
  function newConversation() {
    if (page.source) return;
    page.conversation = null;
    $("conversation-title").textContent = T.new_conversation;
    $("messages").replaceChildren(element("li", "muted empty", T.no_messages));
    for (const button of document.querySelectorAll("#conversations button")) button.classList.remove("current");
    setComposer(true);
    $("message").focus();
  }

  async function createConversation(firstMessage) {
    const title = firstMessage.length > 60 ? `${firstMessage.slice(0, 59)}…` : firstMessage;
    page.conversation = await api("POST", "/api/v1/conversations/", { user_id: CHAT_USER, title });
    $("conversation-title").textContent = title;
    loadConversations().catch(() => {});
  }

  // --- messages and replies -------------------------------------------------------------

  function addMessage(role, text) {
    $("messages").querySelector(".empty")?.remove();
    const item = element("li", `message ${role}`);
    item.append(element("div", "who", role === "user" ? T.you : T.assistant), element("div", "text", text),
      element("div", "figures"));
    $("messages").append(item);
    item.scrollIntoView({ block: "end" });
    return item;
  }

  // A reply the budget ended (cut short, or refused before its first word) says so under its text.
  function markBudget(reply, finishReason) {
    if (finishReason !== "budget" || reply.querySelector(".budget")) return;
    reply.classList.add("budget");
    reply.querySelector(".text").after(element("div", "budget muted", T.budget));
  }

  function figuresOf(document_) {
    const result = document_.result || {};
    return {
      task_id: document_.task_id, status: document_.status, tokens: result.tokens,
      estimated: result.tokens_estimated, cost: result.cost, first_token_ms: result.time_to_first_token_ms,
    };
  }

  function showFigures(reply, figures) {
    const shown = { ...(reply.figures || {}), ...figures };
    reply.figures = shown;
    const parts = [];
    if (shown.task_id) parts.push([T.task, shown.task_id, "task-id"]);
    if (shown.status) parts.push([T.status, shown.status, "status"]);
    if (shown.tokens) {
      const { prompt, completion, total } = shown.tokens;
      const estimated = shown.estimated ? ` (${T.estimated})` : "";
      parts.push([T.tokens, `${total} = ${prompt} + ${completion}${estimated}`, "tokens"]);
    }
    if (shown.cost !== undefined && shown.cost !== null) parts.push([T.cost, `$${Number(shown.cost).toFixed(6)}`, "cost"]);
    if (shown.first_token_ms !== undefined && shown.first_token_ms !== null) {
      parts.push([T.first_token, `${shown.first_token_ms} ms`, "first-token"]);
    }
    const box = reply.querySelector(".figures");
    box.replaceChildren(...parts.map(([label, value, name]) => {
      const part = element("span", `figure ${name}`);
      part.append(element("span", "label", label), " ", element("code", null, value));
      return part;
    }));
  }

  async function send(event) {
    event.preventDefault();
    const text = $("message").value.trim();
    if (!text || page.source) return;
    setComposer(false);
    notice("");
    try {
      if (!page.conversation) await createConversation(text);
      const accepted = await api("POST", "/api/v1/tasks/ai/generate", {
        conversation_id: page.conversation.conversation_id, user_id: page.conversation.user_id, user_message: text,
      });
      $("message").value = "";
      addMessage("user", text);
      const reply = addMessage("assistant", "");
      reply.classList.add("writing");
      showFigures(reply, { task_id: accepted.task_id, status: accepted.status });
      watch(accepted.task_id, reply);
    } catch (error) {
      notice(error.message);
      setComposer(true);
    }
  }

  function watch(taskId, reply) {
    const text = reply.querySelector(".text");
    const source = new EventSource(`/api/v1/tasks/stream/${encodeURIComponent(taskId)}`);
    let written = "";
    Object.assign(page, { source, taskId });
    $("stop").hidden = false;
    notice(T.queued);
    const data = (event) => JSON.parse(event.data);
    const end = (figures, message) => {
      source.close();
      Object.assign(page, { source: null, taskId: null });
      reply.classList.remove("writing");
      $("stop").hidden = true;
      if (figures) showFigures(reply, figures);
      notice(message || "");
      setComposer(true);
      loadConversations().catch(() => {});
    };
    source.addEventListener("open", () => notice(T.writing));
    source.addEventListener("status", (event) => {
      const { status } = data(event);
      showFigures(reply, { status });
      notice(status === "PENDING" ? T.queued : T.writing);
    });
    source.addEventListener("delta", (event) => {
      written += data(event).text;
      text.textContent = written;
      reply.scrollIntoView({ block: "end" });
    });
    source.addEventListener("reset", () => { written = ""; text.textContent = ""; });  // a retry writes it again
    source.addEventListener("done", (event) => {
      const document_ = data(event);
      text.textContent = document_.result.response;  // the saved reply, the source of truth
      markBudget(reply, document_.result.finish_reason);
      end(figuresOf(document_), document_.result.finish_reason === "budget" ? T.budget : "");
    });
    source.addEventListener("cancelled", (event) => {
      text.textContent = data(event).partial;
      reply.classList.add("cancelled");
      end({ status: "REVOKED" }, T.cancelled);
    });
    source.addEventListener("error", (event) => {
      if (event.data) {  // the task failed: the server's `error` event carries its /status document
        const document_ = data(event);
        reply.classList.add("failed");
        end(figuresOf(document_), `${T.failed}: ${document_.error || document_.status}`);
      } else if (source.readyState === EventSource.CLOSED) {  // refused (401/404...): no retrying
        end(null, T.request_failed);
      } else {
        notice(T.connection_lost);  // EventSource reconnects with Last-Event-ID by itself
      }
    });
  }

  async function stop() {
    if (!page.taskId) return;
    $("stop").disabled = true;
    try {
      await api("POST", `/api/v1/tasks/cancel/${encodeURIComponent(page.taskId)}`);
    } catch (error) {
      notice(error.message);  // e.g. 409: it finished meanwhile; the stream brings the reply
    } finally {
      $("stop").disabled = false;
    }
  }

  function setComposer(enabled) {
    $("message").disabled = !enabled;
    $("send").disabled = !enabled;
  }

  $("composer").addEventListener("submit", (event) => send(event).catch((error) => notice(error.message)));
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", stop);
  $("new-conversation").addEventListener("click", newConversation);
  setComposer(true);
  loadConversations().catch((error) => notice(error.message));
})();
