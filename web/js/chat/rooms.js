// How rooms are named, ordered and addressed in the client, so the sidebar,
// the quick switcher, search results and notifications all say the same.

/** The other people of a direct conversation (everyone but `me`). */
export function otherMembers(room, me) {
  return (room.members ?? []).filter((member) => member.id !== me.id);
}

/** The person a one-to-one conversation is with (yourself for a note-to-self DM). */
export function dmPartner(room, me) {
  if (room.kind !== 'dm') return null;
  return otherMembers(room, me)[0] ?? (room.members ?? [])[0] ?? null;
}

export function isDirect(room) {
  return room.kind === 'dm' || room.kind === 'group';
}

/** What a person reads as the room's name. */
export function roomName(room, me) {
  if (room.kind === 'dm') {
    const partner = dmPartner(room, me);
    if (!partner) return 'Direct message';
    return partner.id === me.id ? `${partner.display_name} (you)` : partner.display_name;
  }
  if (room.kind === 'group') {
    const names = otherMembers(room, me).map((member) => member.display_name.split(/\s+/)[0]);
    return names.join(', ') || 'Group';
  }
  return room.name ?? 'Room';
}

/** The name with its sigil, for lists and headings: "# general", "🔒 ops", "Ana Lima". */
export function roomLabel(room, me) {
  if (room.kind === 'channel') return `#${room.name}`;
  return roomName(room, me);
}

/** The address of a room, or of one message in it. */
export function roomPath(roomId, seq = null) {
  return seq ? `/chat/${roomId}/${seq}` : `/chat/${roomId}`;
}

/** Newest activity first: for direct conversations and the quick switcher. */
export function lastActivity(summary) {
  return summary.last_message?.created_at ?? summary.room.created_at;
}

/** The rooms of the sidebar: channels and private rooms by name, direct ones by activity. */
export function sidebarGroups(client) {
  const rooms = [...client.rooms.values()];
  const byName = (a, b) => roomName(a.room, client.me).localeCompare(roomName(b.room, client.me));
  return {
    channels: rooms.filter((s) => !isDirect(s.room) && !s.room.archived).sort(byName),
    direct: rooms.filter((s) => isDirect(s.room)).sort((a, b) => lastActivity(b) - lastActivity(a)),
    archived: rooms.filter((s) => !isDirect(s.room) && s.room.archived).sort(byName),
  };
}
