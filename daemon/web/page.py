"""The one HTML page: inline CSS and JS, no framework, no build step, nothing from the internet.

The HTML holds no data: the script polls ``/api/status`` (every 2 s) and ``/api/map`` (when
the counts change) and builds the page with ``textContent`` and ``createElementNS`` only, so
every name a card brings (``<img src=x onerror=...>.jpg``) is shown as text, never read as markup.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="{csrf}"><meta name="retry" content="{retry}">
<title>mapillary-daemon</title>
<style>
body{font:15px/1.4 system-ui,sans-serif;margin:0;padding:0 .8em 2em;max-width:60em;color:#222}
h1{font-size:1.2em;margin:.6em 0}h2{font-size:1.05em;margin:1.2em 0 .3em}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.15em .4em;
border-bottom:1px solid #ddd;vertical-align:top;overflow-wrap:anywhere}
.num{text-align:right;white-space:nowrap}.safe{color:#fff;background:#197a2d;padding:0 .3em}
.bad{color:#a01818}.muted{color:#777}#map{width:100%;height:auto;border:1px solid #ccc;
background:#f6f6f0;touch-action:manipulation}ul{padding-left:1.2em;margin:.2em 0}li{overflow-wrap:anywhere}
.key span{display:inline-block;margin-right:.8em}
.thumbs{display:flex;flex-wrap:wrap;gap:.4em;padding:0;list-style:none}.thumbs li{width:8.5em;
font-size:.8em}.thumbs img{width:100%;height:6.4em;object-fit:cover;background:#ddd;display:block}
.thumbs li.duplicate img,.thumbs li.rejected img,.thumbs li.waiting_for_position img{opacity:.45}
.thumbs li.duplicate,.thumbs li.rejected,.thumbs li.waiting_for_position{outline:2px dashed #a01818}
.warn{background:#fff3cd;padding:.2em .4em}a.mly{font-weight:bold}.key i{display:inline-block;width:.9em;
height:.9em;margin-right:.2em;vertical-align:middle}
</style></head><body>
<h1>mapillary-daemon <span id="daemon" class="muted"></span></h1>
<div id="upload"></div>
<h2>Queue</h2><table id="queue"></table>
<h2>Why photos wait</h2><table id="waiting"></table>
<h2>GPS and clock</h2><table id="clock"></table>
<h2>Cards and folders</h2><table id="roots"></table>
<h2>Map</h2>
<div class="key" id="key"></div>
<svg id="map" viewBox="0 0 1000 600" role="img" aria-label="map of captured sequences"></svg>
<div id="photos"><p class="muted">click a track to see its photos</p></div>
<h2>Failed sequences</h2><div id="failed"></div>
<h2>Recent problems</h2><div id="problems"></div>
<h2>Set aside before import</h2><div id="aside"></div>
<p class="muted" id="updated"></p>
<script>
"use strict";
const COLOURS={pending:"#d89000",uploading:"#1f6fd1",finished:"#197a2d",failed:"#c01818"};
const LABELS={pending:"waiting",uploading:"uploading",finished:"on Mapillary",failed:"failed"};
const MARKS={duplicate:"#666",rejected:"#a01818",waiting_for_position:"#d89000"};
const SAID={duplicate:"duplicate",rejected:"set aside",waiting_for_position:"waiting for a position"};
function el(tag,text,cls){const e=document.createElement(tag);
 if(text!==undefined&&text!==null)e.textContent=String(text);if(cls)e.className=cls;return e}
function clear(id){const e=document.getElementById(id);e.replaceChildren();return e}
function size(n){const u=["B","KB","MB","GB"];let i=0;while(n>=1024&&i<3){n/=1024;i++}
 return i?n.toFixed(1)+" "+u[i]:n+" B"}
function dur(s){s=Math.round(s);if(s<90)return s+" s";if(s<5400)return Math.floor(s/60)+" min";
 return Math.floor(s/3600)+" h "+Math.floor(s%3600/60)+" min"}
function row(t,cells,cls){const tr=el("tr");cells.forEach((c,i)=>{const td=el(i?"td":"th");
 if(c instanceof Node)td.append(c);else td.textContent=String(c);if(cls&&cls[i])td.className=cls[i];
 tr.append(td)});t.append(tr)}
function note(t,text){const tr=el("tr");tr.append(el("td",text,"muted"));t.append(tr)}
function list(id,items,empty){const box=clear(id);if(!items.length){box.append(el("p",empty,"muted"));
 return}const ul=el("ul");items.forEach(t=>ul.append(el("li",t)));box.append(ul)}
function showStatus(st){
 const d=st.daemon||{};document.getElementById("daemon").textContent=
  d.running?"running, "+(d.activity||""):"not running";
 let up="To upload: "+size(st.bytes_to_upload);
 if(d.running&&d.upload_rate&&st.bytes_to_upload)up+=" at "+size(d.upload_rate)+"/s";
 if(st.eta_seconds)up+=", about "+dur(st.eta_seconds)+" left";
 if(d.server)up+=" \u00b7 server: "+d.server;if(d.paused)up+=" \u00b7 paused: "+d.paused;
 document.getElementById("upload").textContent=up;
 const q=clear("queue");row(q,["images","count"],[null,"num"]);
 for(const[k,v]of Object.entries(st.images))if(v)row(q,[k,v],[null,"num"]);
 row(q,["sequences",""]);for(const[k,v]of Object.entries(st.sequences))
  if(v)row(q,[LABELS[k]||k,v],[null,"num"]);
 const r=clear("roots");const live=d.running?(d.roots||{}):{};const cards=d.cards||{};
 const names=new Set([...Object.keys(st.sources),...Object.keys(live),...Object.keys(cards)]);
 if(!names.size)note(r,"none yet");
 for(const n of names){const info=st.sources[n];const card=cards[n];
  const counts=info?Object.entries(info.images).map(([k,v])=>v+" "+k).join(", "):"";
  row(r,[n,card?cardState(card,d.running):el("span",live[n]||""),counts])}
 showWaiting(d);showClock(d);
 const failed=clear("failed");const fs=st.failed_sequences||[];
 if(!fs.length)failed.append(el("p","none","muted"));const ful=el("ul");failed.append(ful);
 for(const s of fs){const when=s.next_try?", next try in "+dur(Math.max(s.next_try-Date.now()/1000,0)):"";
  const li=el("li",s.uuid+" ("+s.images+" images): "+s.reason+when+" ");
  if(meta("retry")){const b=el("button","Retry");b.className="retry";b.dataset.uuid=s.uuid;
   b.addEventListener("click",()=>retry(s.uuid,b));li.append(b)}ful.append(li)}
 list("problems",st.recent_errors.map(e=>e.path+": "+e.state+": "+e.reason),"none");
 list("aside",(st.recent_events||[]).filter(e=>e.kind==="set_aside").map(e=>e.message),"none");
 document.getElementById("updated").textContent="updated "+new Date().toLocaleTimeString();
}
function cardState(c,running){const box=el("span");
 if(c.safe_to_remove)box.append(el("span","safe to remove","safe")," ");
 else box.append(el("b","keep it in"+(running?"":" (last run)")+": ","bad"));
 box.append(el("span",c.state));return box}
function offset(o){o=Number(o)||0;return(o>0?"+":"")+o+" s"}
function showWaiting(d){const t=clear("waiting");
 const w=Object.entries(d.running?(d.waiting||{}):{}).filter(([k,v])=>v).sort((a,b)=>b[1]-a[1]);
 if(!w.length){note(t,d.running?"nothing waits":"the daemon is not running");return}
 for(const[k,v]of w)row(t,[k.replace(/_/g," "),v],[null,"num"])}
function showClock(d){const t=clear("clock");const g=d.gps,c=d.clock;
 if(g){let s=g.state||"unknown";if(g.state==="fix"&&g.mode)s+=" ("+g.mode+"D)";
  if(g.satellites!==undefined&&g.satellites!==null)s+=", "+g.satellites+" satellites";
  if(g.fixes)s+=", "+g.fixes+" fixes logged";row(t,["GPS",s]);
  if(g.server)row(t,["gpsd",g.server]);if(g.last_fix)row(t,["last fix",g.last_fix]);
  if(g.track)row(t,["own track",g.track])}
 else row(t,["GPS","no gpsd: positions come from the photos and GPX files"]);
 if(!c){row(t,["zone and clock","not said by this daemon"]);return}
 row(t,["zone",(c.tz||"this machine's")+(c.source?" ("+c.source+")":"")]);
 row(t,["camera clock offset",offset(c.time_offset)]);const sg=c.suggestion;if(!sg)return;
 const parts=[];if(sg.tz)parts.push("zone "+sg.tz);
 if(sg.time_offset!==undefined&&sg.time_offset!==null)parts.push("clock offset "+offset(sg.time_offset));
 let text="the photos suggest "+(parts.join(" and ")||"a change");const how=[];
 if(typeof sg.confidence==="number")how.push(Math.round(sg.confidence*100)+"% sure");
 else if(sg.confidence)how.push(String(sg.confidence));if(sg.photos)how.push(sg.photos+" photos");
 if(how.length)text+=" ("+how.join(", ")+")";if(sg.reason)text+=": "+sg.reason;
 row(t,["suggestion",el("span",text,"warn")])}
function meta(n){const m=document.querySelector('meta[name="'+n+'"]');return m?m.content:""}
async function retry(uuid,b){b.disabled=true;try{const r=await fetch("api/retry",{method:"POST",
 headers:{"Content-Type":"application/json","X-CSRF-Token":meta("csrf")},
 body:JSON.stringify({sequence:uuid})});const j=await r.json();
 b.textContent=r.ok?"queued again":"not retried: "+j.error}catch(e){b.textContent=String(e)}
 drawn="";}
const SVG="http://www.w3.org/2000/svg";
function svg(tag,attrs){const e=document.createElementNS(SVG,tag);
 for(const[k,v]of Object.entries(attrs))e.setAttribute(k,String(v));return e}
function showMap(m){
 const map=clear("map");/* points are [lat, lon] */
 const pts=[...m.sequences.flatMap(s=>s.points),...m.photos.map(p=>[p.lat,p.lon])];
 const key=clear("key");for(const[k,v]of Object.entries(LABELS)){const s=el("span");
  const i=el("i");i.style.background=COLOURS[k];s.append(i,v);key.append(s)}
 const s2=el("span","\u00d7 duplicate (grey) / set aside (red)");const s3=el("span");const gi=el("i");
 gi.style.background="#c8c8c8";s3.append(gi,"GPX");key.append(s2,s3);
 if(!pts.length){const t=svg("text",{x:20,y:40});t.textContent="no positions yet";map.append(t);
  return}
 let la0=Infinity,la1=-Infinity,lo0=Infinity,lo1=-Infinity;
 for(const[la,lo]of pts){la0=Math.min(la0,la);la1=Math.max(la1,la);lo0=Math.min(lo0,lo);
  lo1=Math.max(lo1,lo)}
 const k=Math.cos((la0+la1)/2*Math.PI/180);const w=Math.max((lo1-lo0)*k,1e-6),h=Math.max(la1-la0,1e-6);
 const sc=Math.min(960/w,560/h);
 const xy=p=>(20+(p[1]-lo0)*k*sc).toFixed(1)+","+(580-(p[0]-la0)*sc).toFixed(1);
 for(const g of m.gpx||[])map.append(svg("polyline",{points:g.map(xy).join(" "),fill:"none",stroke:"#c8c8c8","stroke-width":12,class:"gpx"}));
 for(const s of m.sequences){if(!s.points.length)continue;
  const line=svg("polyline",{points:s.points.map(xy).join(" "),fill:"none",
   stroke:COLOURS[s.state]||"#555","stroke-width":4,"stroke-linejoin":"round",
   "data-uuid":s.uuid,"data-points":s.points.length,class:"track"});
  const title=svg("title",{});title.textContent=(LABELS[s.state]||s.state)+": "+s.uuid;
  line.append(title);line.style.cursor="pointer";line.addEventListener("click",()=>photos(s));
  map.append(line)}
 const want=/^#sequence=([0-9a-f-]+)$/.exec(location.hash);
 const open=want&&m.sequences.find(x=>x.uuid===want[1]);if(open&&shown!==open.uuid)photos(open);
 for(const p of m.photos){const[x,y]=xy([p.lat,p.lon]).split(",");const t=svg("text",{x:x,y:y,"text-anchor":"middle",
  "dominant-baseline":"middle",fill:MARKS[p.state]||"#a01818",class:"mark","data-state":p.state});
  t.textContent="\u00d7";const title=svg("title",{});
  title.textContent=p.name+": "+(SAID[p.state]||p.state)+(p.reason?": "+p.reason:"");
  t.append(title);map.append(t)}
}
let shown="";
async function photos(s){shown=s.uuid;history.replaceState(null,"","#sequence="+s.uuid);
 const box=clear("photos");box.append(el("h2",(LABELS[s.state]||s.state)+" sequence "+s.uuid));
 if(s.reason)box.append(el("p",s.reason,"bad"));
 if(typeof s.url==="string"&&/^https?:[/][/]/.test(s.url)){const a=el("a","on Mapillary","mly");
  a.href=s.url;a.rel="noopener noreferrer";a.target="_blank";const p=el("p");p.append(a);box.append(p)}
 let d=null;try{const r=await fetch("api/sequence/"+encodeURIComponent(s.uuid),{cache:"no-store"});
  if(r.ok)d=await r.json()}catch(e){}
 if(!d){box.append(el("p","its photos could not be listed","bad"));return}
 box.append(el("p",d.photos.length+" photos"),thumbs(d.photos));if(!d.left_out.length)return;
 box.append(el("h3","left out of it ("+d.left_out.length+"): duplicates and photos set aside"),
  thumbs(d.left_out))}
function thumbs(list){const ul=el("ul",null,"thumbs");for(const p of list){
 const li=el("li",null,"photo "+p.state);li.dataset.id=p.id;const img=el("img");img.loading="lazy";
 img.alt=p.name||"";img.src="api/photo/"+encodeURIComponent(p.id)+"/thumbnail";
 const said=SAID[p.state]||p.state;li.append(img,el("div",p.name),
  el("div",said+(p.reason?": "+p.reason:""),p.reason?"bad":"muted"));ul.append(li)}return ul}
async function poll(url,show){try{const r=await fetch(url,{cache:"no-store"});
 if(r.ok)show(await r.json())}catch(e){document.getElementById("updated").textContent=
 "the daemon does not answer ("+e+")"}}
let drawn="";
function counts(st){return JSON.stringify([st.images,st.sequences])}
async function tick(){let st=null;const first=drawn===""?poll("api/map",showMap):null;
 await poll("api/status",s=>{st=s;showStatus(s)});
 /* the map is big (50,000 photos: 1 MB): asked with the status the first time, then again
    only when the counts moved */
 if(first){await first;drawn=st?counts(st):""}
 else if(st&&counts(st)!==drawn){drawn=counts(st);await poll("api/map",showMap)}
 setTimeout(tick,2000)}
tick();
</script></body></html>
"""
