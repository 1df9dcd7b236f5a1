#!/usr/bin/env python3
"""Checks the layout rules of src/ (see the Layout section of src/lib.rs):
- no import cycle between files (a module file that uses another which, by
  any path, uses it back); `use` paths through crate::, super:: and self::,
  grouped ones included, are followed to the file that defines them;
- no file with more than 700 lines before its `#[cfg(test)]` module;
- the handshake's wire words ("hello", "welcome") spelled only under src/proto.
Exits 1 with one line per violation."""
import os, re, sys

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
root = 'src'
MAX_LINES = 700
files={}
for d,_,fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p=os.path.join(d,f)
            # module path
            rel=os.path.relpath(p,root)[:-3].split('/')
            if rel[-1] in ('mod','lib','main'): rel=rel[:-1]
            files[tuple(rel)]=p
def resolve(mod, path):
    # longest prefix that is a file
    for i in range(len(path),0,-1):
        if tuple(path[:i]) in files: return tuple(path[:i])
    return None
edges={}
for mod,p in files.items():
    src=open(p).read()
    src=src.split('#[cfg(test)]')[0]
    deps=set()
    for m in re.finditer(r'\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)', src):
        head,rest=m.group(1),m.group(2).split('::')[1:]
        ups=1
        while head=='super' and rest and rest[0]=='super': ups+=1; rest=rest[1:]
        isdir = os.path.basename(p) in ('mod.rs','lib.rs','main.rs')
        if head=='crate':
            base=[] if not mod or mod[0]!='bin' else list(mod[:2])
            path=base+rest
        elif head=='super':
            parent=list(mod)[:len(mod)-ups]
            path=parent+rest
        else:
            path=list(mod)+rest
        r=resolve(mod,path)
        if r and r!=mod: deps.add(r)
    for m in re.finditer(r'\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^}]*)\}', src):
        head=m.group(1); rest=[x for x in m.group(2).split('::') if x]
        ups=1
        while head=='super' and rest and rest[0]=='super': ups+=1; rest=rest[1:]
        if head=='crate': base=([] if not mod or mod[0]!='bin' else list(mod[:2]))+rest
        elif head=='super': base=list(mod)[:len(mod)-ups]+rest
        else: base=list(mod)+rest
        for item in m.group(3).split(','):
            item=item.strip().split('::')[0].split(' ')[0]
            if not item or item=='self': continue
            r=resolve(mod,base+[item])
            if r and r!=mod: deps.add(r)
    edges[mod]=deps
# cycles (Tarjan)
idx={};low={};st=[];on=set();out=[];c=[0]
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in edges.get(v,()):
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: out.append(comp)
sys.setrecursionlimit(10000)
for v in edges:
    if v not in idx: sc(v)

problems = []
for comp in out:
    problems.append('import cycle: ' + ' <-> '.join('/'.join(x) or 'lib' for x in sorted(comp)))
for mod, p in sorted(files.items()):
    text = open(p).read()
    n = len(re.split(r'\n#\[cfg\(test\)\]\s*\nmod ', text)[0].splitlines())
    if n > MAX_LINES and not p.endswith('/tests.rs'):
        problems.append(f'{p}: {n} lines of non-test code (at most {MAX_LINES})')
    if not p.startswith('src/proto/'):
        for i, line in enumerate(text.splitlines(), 1):
            if re.search(r'"(hello|welcome)"', line):
                problems.append(f'{p}:{i}: wire word outside src/proto: {line.strip()}')
for p in problems:
    print('layout:', p)
print(f'layout: {len(files)} files, {len(problems)} problems')
sys.exit(1 if problems else 0)
