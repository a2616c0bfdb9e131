"""What simulated customers write: contact messages per cause and language, survey and review comments.

Wording varies (several phrasings per cause, greetings, sign-offs, sometimes no punctuation) and a share of
messages carries typos, as real inbound messages do. `{order}` is the order number, `{days}` how long they
have waited.
"""

from __future__ import annotations

import numpy as np

CONTACT_TEMPLATES: dict[str, dict[str, list[str]]] = {
    "en": {
        "late": [
            "Where is my order {order}? It was supposed to arrive {promised} and it's still not here",
            "hi, my parcel for order {order} hasn't arrived yet. any update?",
            "Still waiting on {order}... tracking hasn't moved in {days} days. When will it come?",
            "Can you tell me where my package is? Order {order}. It's late.",
            "my order {order} is late, I need it this week. what's going on",
            "Hello, the delivery date for {order} has passed. Could you check with the courier please?",
        ],
        "failed_attempt": [
            "The courier says they tried to deliver {order} but I was home all day!",
            "Missed delivery for order {order}, how do I rearrange it?",
            "got a card saying delivery failed for {order}. can it go to a pickup point instead?",
            "Hi, I wasn't in when they came with {order}. When will they try again?",
        ],
        "damaged": [
            "My order {order} arrived damaged. The box was crushed and the item is broken.",
            "The parcel for {order} came completely wet and torn, not happy at all",
            "Item in order {order} is damaged, I want a replacement or a refund",
            "received {order} today but it's broken :( what now?",
        ],
        "lost": [
            "Order {order} never arrived. Tracking has said nothing for {days} days. Is it lost?",
            "I think my parcel {order} got lost, no updates for ages. I'd like a refund please",
            "where is {order}??? it's been {days} days with no news",
            "The tracking for {order} stopped a week ago. Please help.",
        ],
        "refund_slow": [
            "I returned my items from {order} {days} days ago and still no refund. When will I get my money?",
            "Hi, any news on the refund for {order}? You received the return ages ago",
            "still waiting for my refund on order {order}, this is taking too long",
        ],
        "invoice_missing": [
            "Could you send me the invoice for order {order}? I need it for my company.",
            "I didn't get an invoice for {order}, can you email it please?",
            "hi where can I download the invoice for {order}",
        ],
        "wrong_item": [
            "I received the wrong item in order {order}. I ordered something completely different.",
            "Wrong size/colour sent for {order}, what do I do?",
            "The package for {order} had someone else's product in it",
        ],
        "none": [
            "Hi, do you ship to Switzerland?",
            "Does the linen shirt run small? Thinking about ordering.",
            "Can I change the delivery address on {order}?",
            "Do you have gift wrapping?",
            "what's your return policy?",
        ],
    },
    "de": {
        "late": [
            "Wo bleibt meine Bestellung {order}? Sie sollte {promised} ankommen und ist immer noch nicht da",
            "Hallo, mein Paket zu Bestellung {order} ist noch nicht angekommen. Gibt es Neuigkeiten?",
            "Ich warte seit {days} Tagen auf {order}, die Sendungsverfolgung bewegt sich nicht. Wann kommt es?",
            "Meine Bestellung {order} ist überfällig. Was ist da los?",
            "wo ist mein paket {order}?? sollte längst da sein",
        ],
        "failed_attempt": [
            "Der Bote hat angeblich versucht {order} zuzustellen, ich war aber den ganzen Tag zu Hause!",
            "Zustellung von {order} fehlgeschlagen, wie kann ich einen neuen Termin bekommen?",
            "Benachrichtigungskarte für {order} im Briefkasten. Kann das Paket in eine Packstation?",
        ],
        "damaged": [
            "Meine Bestellung {order} ist beschädigt angekommen. Der Karton war eingedrückt.",
            "Artikel aus {order} ist kaputt angekommen, ich möchte Ersatz oder mein Geld zurück",
            "Paket {order} war nass und aufgerissen, sehr ärgerlich",
        ],
        "lost": [
            "Bestellung {order} ist nie angekommen. Seit {days} Tagen keine Info. Ist das Paket verloren?",
            "Mein Paket {order} ist wohl verloren gegangen, bitte um Erstattung",
            "wo ist {order}??? seit {days} tagen nichts",
        ],
        "refund_slow": [
            "Ich habe {order} vor {days} Tagen zurückgeschickt und noch keine Erstattung erhalten.",
            "Wann bekomme ich mein Geld für die Retoure von {order}?",
        ],
        "invoice_missing": [
            "Können Sie mir bitte die Rechnung für Bestellung {order} schicken?",
            "Ich habe keine Rechnung zu {order} bekommen.",
        ],
        "wrong_item": [
            "Ich habe in Bestellung {order} den falschen Artikel bekommen.",
            "Falsche Größe geliefert bei {order}, was nun?",
        ],
        "none": [
            "Hallo, liefern Sie auch in die Schweiz?",
            "Fällt das Leinenhemd klein aus?",
            "Kann ich die Lieferadresse für {order} noch ändern?",
        ],
    },
    "fr": {
        "late": [
            "Où est ma commande {order} ? Elle devait arriver {promised} et toujours rien",
            "Bonjour, mon colis pour la commande {order} n'est pas encore arrivé. Des nouvelles ?",
            "J'attends {order} depuis {days} jours, le suivi ne bouge plus. Quand va-t-il arriver ?",
            "ma commande {order} est en retard, c'est pour un cadeau !!",
        ],
        "failed_attempt": [
            "Le livreur dit être passé pour {order} mais j'étais chez moi toute la journée !",
            "Livraison de {order} manquée, comment la reprogrammer ?",
            "Avis de passage pour {order}, est-ce possible de le livrer en point relais ?",
        ],
        "damaged": [
            "Ma commande {order} est arrivée endommagée, le carton était écrasé.",
            "L'article de {order} est cassé, je veux un remplacement ou un remboursement",
        ],
        "lost": [
            "La commande {order} n'est jamais arrivée. Aucune information depuis {days} jours. Le colis est perdu ?",
            "Je pense que mon colis {order} est perdu, je souhaite être remboursé",
        ],
        "refund_slow": [
            "J'ai renvoyé {order} il y a {days} jours et toujours pas de remboursement.",
            "Quand serai-je remboursé pour le retour de {order} ?",
        ],
        "invoice_missing": [
            "Pourriez-vous m'envoyer la facture de la commande {order} ?",
            "Je n'ai pas reçu de facture pour {order}.",
        ],
        "wrong_item": [
            "J'ai reçu le mauvais article dans la commande {order}.",
            "Mauvaise taille envoyée pour {order}, que faire ?",
        ],
        "none": [
            "Bonjour, livrez-vous en Belgique ?",
            "Est-ce que la chemise en lin taille petit ?",
        ],
    },
}

FOLLOW_UPS = {
    "en": [
        "Hello?? Any answer?",
        "Still no reply, this is really frustrating",
        "Any news on this please?",
        "I'm still waiting for an answer about {order}",
    ],
    "de": ["Hallo?? Keine Antwort?", "Immer noch keine Rückmeldung zu {order}", "Gibt es schon etwas Neues?"],
    "fr": ["Allô ? Pas de réponse ?", "Toujours aucune réponse concernant {order}", "Des nouvelles svp ?"],
}

SUBJECTS = {
    "en": {
        "late": "Where is my order {order}?",
        "failed_attempt": "Missed delivery {order}",
        "damaged": "Damaged parcel {order}",
        "lost": "Order {order} never arrived",
        "refund_slow": "Refund for {order}",
        "invoice_missing": "Invoice for order {order}",
        "wrong_item": "Wrong item in {order}",
        "none": "Question",
    },
    "de": {
        "late": "Wo ist meine Bestellung {order}?",
        "failed_attempt": "Zustellung {order}",
        "damaged": "Beschädigte Lieferung {order}",
        "lost": "Bestellung {order} nicht angekommen",
        "refund_slow": "Erstattung {order}",
        "invoice_missing": "Rechnung {order}",
        "wrong_item": "Falscher Artikel {order}",
        "none": "Frage",
    },
    "fr": {
        "late": "Où est ma commande {order} ?",
        "failed_attempt": "Livraison manquée {order}",
        "damaged": "Colis endommagé {order}",
        "lost": "Commande {order} jamais reçue",
        "refund_slow": "Remboursement {order}",
        "invoice_missing": "Facture {order}",
        "wrong_item": "Mauvais article {order}",
        "none": "Question",
    },
}

GREETINGS = {
    "en": ["", "", "Hi, ", "Hello, ", "Hi there, "],
    "de": ["", "", "Hallo, ", "Guten Tag, "],
    "fr": ["", "", "Bonjour, ", "Bonsoir, "],
}
SIGN_OFFS = {
    "en": ["", "", " Thanks", " Thanks, {first}", " Cheers"],
    "de": ["", "", " Danke", " Viele Grüße, {first}"],
    "fr": ["", "", " Merci", " Cordialement, {first}"],
}

# Survey and review comments by sentiment and what went wrong.
COMMENTS: dict[str, dict[str, list[str]]] = {
    "en": {
        "great": [
            "Fast delivery, lovely quality",
            "Arrived a day early, great packaging",
            "Perfect, will order again",
            "Exactly as pictured, very happy",
            "Smooth from start to finish",
        ],
        "ok": [
            "Fine, nothing special",
            "Good product, delivery was ok",
            "Took a while but all good",
            "late but handled well",
        ],
        "late": [
            "Delivery was late and nobody told me",
            "Arrived days after the promised date",
            "Way too slow, needed it earlier",
            "The parcel was late, product is fine",
        ],
        "failed_attempt": [
            "Courier claimed I wasn't home. I was.",
            "Had to go to the depot to get my parcel",
        ],
        "damaged": ["Box arrived crushed, item broken", "Damaged on arrival, very disappointing"],
        "lost": ["Never received my order", "Parcel lost, still waiting for a refund"],
        "return": [
            "Didn't fit, return was easy enough",
            "Too small, had to send it back",
            "Refund took forever",
        ],
        "wrong_item": ["Sent me the wrong item", "Wrong size delivered"],
    },
    "de": {
        "great": [
            "Schnelle Lieferung, tolle Qualität",
            "Alles bestens, gerne wieder",
            "Super verpackt und pünktlich",
        ],
        "ok": ["Ganz ok", "Produkt gut, Lieferung in Ordnung", "verspätet, aber gut gelöst"],
        "late": [
            "Lieferung kam viel zu spät",
            "Tage nach dem versprochenen Termin angekommen",
            "Zu langsam, keine Info",
        ],
        "failed_attempt": ["Bote hat nicht geklingelt", "Musste das Paket in der Filiale abholen"],
        "damaged": ["Karton kaputt, Artikel beschädigt", "Beschädigt angekommen"],
        "lost": ["Paket nie angekommen", "Sendung verloren, warte auf Erstattung"],
        "return": ["Zu klein, Rücksendung war einfach", "Passte nicht, Erstattung dauerte lange"],
        "wrong_item": ["Falscher Artikel geliefert"],
    },
    "fr": {
        "great": [
            "Livraison rapide, très belle qualité",
            "Parfait, je recommande",
            "Bien emballé et à l'heure",
        ],
        "ok": ["Correct", "Produit bien, livraison correcte", "en retard mais bien géré"],
        "late": ["Livraison très en retard", "Arrivé plusieurs jours après la date promise"],
        "failed_attempt": ["Le livreur n'a pas sonné", "J'ai dû aller chercher le colis au dépôt"],
        "damaged": ["Colis écrasé, article cassé", "Arrivé endommagé"],
        "lost": ["Jamais reçu ma commande", "Colis perdu"],
        "return": ["Trop petit, retour facile", "Remboursement trop long"],
        "wrong_item": ["Mauvais article reçu"],
    },
}

_KEYBOARD_NEIGHBOURS = {
    "a": "sq",
    "e": "wr",
    "i": "uo",
    "o": "ip",
    "n": "bm",
    "r": "et",
    "t": "ry",
    "s": "ad",
    "l": "k",
    "d": "sf",
    "h": "gj",
    "m": "n",
    "u": "yi",
    "c": "xv",
    "g": "fh",
    "p": "o",
    "y": "tu",
    "w": "qe",
}


def language(locale: str) -> str:
    lang = locale.split("-", 1)[0]
    return lang if lang in CONTACT_TEMPLATES else "en"


def add_typos(text: str, rng: np.random.Generator, count: int) -> str:
    """Swaps, drops, doubles or fat-fingers `count` letters, as people typing on a phone do."""
    chars = list(text)
    for _ in range(count):
        letters = [i for i, c in enumerate(chars) if c.isalpha()]
        if len(letters) < 4:
            break
        i = letters[int(rng.integers(len(letters) - 1))]
        kind = int(rng.integers(4))
        if kind == 0 and i + 1 < len(chars):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif kind == 1:
            del chars[i]
        elif kind == 2:
            chars.insert(i, chars[i])
        else:
            near = _KEYBOARD_NEIGHBOURS.get(chars[i].lower())
            if near:
                chars[i] = near[int(rng.integers(len(near)))]
    return "".join(chars)


def contact_text(
    cause: str,
    *,
    lang: str,
    order: str,
    first_name: str,
    promised: str,
    days: int,
    rng: np.random.Generator,
    typo_rate: float,
    casual: bool,
) -> str:
    templates = CONTACT_TEMPLATES[lang][cause]
    body = templates[int(rng.integers(len(templates)))].format(order=order, promised=promised, days=days)
    if casual:
        text = body.lower() if rng.random() < 0.4 else body
    else:
        greeting = GREETINGS[lang][int(rng.integers(len(GREETINGS[lang])))]
        sign_off = SIGN_OFFS[lang][int(rng.integers(len(SIGN_OFFS[lang])))].format(first=first_name)
        text = greeting + (
            body[0].lower() + body[1:] if greeting and body[:1].isupper() and body[1:2].islower() else body
        )
        text = text + ("." if text[-1].isalnum() and sign_off else "") + sign_off
    if rng.random() < typo_rate:
        text = add_typos(text, rng, 1 + int(rng.integers(3)))
    return text


def follow_up_text(*, lang: str, order: str, rng: np.random.Generator) -> str:
    options = FOLLOW_UPS[lang]
    return options[int(rng.integers(len(options)))].format(order=order)


def subject(cause: str, *, lang: str, order: str) -> str:
    return SUBJECTS[lang][cause].format(order=order)


def comment(kind: str, *, lang: str, rng: np.random.Generator) -> str:
    options = COMMENTS[lang].get(kind) or COMMENTS["en"][kind]
    return options[int(rng.integers(len(options)))]
